// nplusone_node.js — the node-postgres side of bench/run_nplusone_bench.sh,
// driven by bench/nplusone_workload.py as a coprocess.
//
// Lazy loading the way node-postgres code does it by hand: one Client per
// target (autocommit, as a plain Client is), `SELECT id, name, email FROM
// users ORDER BY id` (no parameters: a simple Query), then for every user
// `client.query('SELECT ... FROM posts WHERE user_id = $1 ORDER BY id',
// [id])` — an unnamed extended-protocol statement (Parse, Bind, Describe,
// Execute, Sync) with an untyped text parameter.  1 + N statements per load.
//
//     NODE_PATH=tests/node/node_modules node --expose-gc bench/nplusone_node.js
//
// Reads one JSON command per line on stdin, answers one JSON line on stdout:
//   {"op": "version"}                   -> {"node": "v20...", "pg": "8..."}
//   {"op": "load", "name": N, "url": U} -> {"secs": S, "data": [[id, name, email,
//                                           [[id, user_id, title, body, created_at], ...]], ...]}
//                                          or {"error": "..."}
//   {"op": "close"}                     -> {"closed": K}, then exits
// The Client for a target is connected on its first load (outside the timed
// part, which starts after a GC when node runs with --expose-gc).
// created_at (timestamp) comes back as PostgreSQL's text with 'T' between
// date and time, as Python's datetime.isoformat() writes it, so that the
// workload can compare the data with the other drivers'.
'use strict';

const readline = require('readline');
const pg = require('pg');

const PARENT = 'SELECT id, name, email FROM users ORDER BY id';
const CHILD = 'SELECT id, user_id, title, body, created_at FROM posts WHERE user_id = $1 ORDER BY id';
const TIMESTAMP = 1114;

pg.types.setTypeParser(TIMESTAMP, (s) => s.replace(' ', 'T'));

const clients = new Map();

async function client(name, url) {
  let c = clients.get(name);
  if (!c) {
    c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10000 });
    await c.connect();
    clients.set(name, c);
  }
  return c;
}

async function load(name, url) {
  const c = await client(name, url);
  if (global.gc) global.gc();
  const t0 = process.hrtime.bigint();
  const out = [];
  const users = (await c.query(PARENT)).rows;
  for (const u of users) {
    const posts = (await c.query(CHILD, [u.id])).rows;
    out.push([u.id, u.name, u.email, posts.map((p) => [p.id, p.user_id, p.title, p.body, p.created_at])]);
  }
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  return { secs, data: out };
}

async function handle(cmd) {
  switch (cmd.op) {
    case 'version':
      return { node: process.version, pg: require('pg/package.json').version };
    case 'load':
      try {
        return await load(cmd.name, cmd.url);
      } catch (e) {
        return { error: `${e.code ? e.code + ' ' : ''}${e.message || e}` };
      }
    case 'close': {
      const n = clients.size;
      for (const c of clients.values()) await c.end().catch(() => {});
      clients.clear();
      return { closed: n };
    }
    default:
      return { error: `unknown op ${JSON.stringify(cmd.op)}` };
  }
}

async function main() {
  const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of rl) {
    if (!line.trim()) continue;
    const cmd = JSON.parse(line);
    process.stdout.write(JSON.stringify(await handle(cmd)) + '\n');
    if (cmd.op === 'close') break;
  }
  for (const c of clients.values()) await c.end().catch(() => {});
}

main().catch((e) => {
  process.stderr.write('nplusone_node: ' + (e.stack || e) + '\n');
  process.exit(1);
});
