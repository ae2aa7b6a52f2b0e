// pg_client.js — a node-postgres (npm `pg`) session for pgfold's integration
// tests (tests/integration/test_node_pg.py).  Connection settings come from
// PGHOST/PGPORT/PGUSER/PGDATABASE; prints one JSON object with what it saw,
// which the test checks and compares between direct and pgfold.
'use strict';

const { Client } = require('pg');

async function main() {
  const client = new Client({ connectionTimeoutMillis: 10000 });
  const notices = [];
  client.on('notice', (msg) => notices.push(msg.message));
  await client.connect();
  const out = {};

  // parameterized queries (extended protocol, unnamed statement)
  let r = await client.query('SELECT $1::int + $2::int AS sum, $3::text AS t, $4::text IS NULL AS n',
    [2, 40, 'héllo ✓', null]);
  out.params = r.rows;

  // named prepared statement reused: Parse once, then Bind/Execute
  out.prepared = [];
  for (let i = 1; i <= 5; i++) {
    r = await client.query({ name: 'times_two', text: 'SELECT $1::int * 2 AS d', values: [i] });
    out.prepared.push(r.rows[0].d);
  }
  r = await client.query("SELECT count(*)::int AS c FROM pg_prepared_statements WHERE name = 'times_two'");
  out.prepared_on_server = r.rows[0].c;

  // a transaction committed and one rolled back
  await client.query('CREATE TEMP TABLE node_t (id int PRIMARY KEY, v text)');
  await client.query('BEGIN');
  for (let i = 1; i <= 3; i++) {
    await client.query('INSERT INTO node_t VALUES ($1, $2)', [i, 'v' + i]);
  }
  await client.query('COMMIT');
  await client.query('BEGIN');
  await client.query('INSERT INTO node_t VALUES ($1, $2)', [99, 'gone']);
  await client.query('ROLLBACK');
  r = await client.query('SELECT id, v FROM node_t ORDER BY id');
  out.rows_after_tx = r.rows;

  // errors carry their SQLSTATE and the session goes on
  try {
    await client.query('SELECT 1/0');
    out.error = null;
  } catch (e) {
    out.error = { code: e.code, message: e.message, severity: e.severity };
  }
  try {
    await client.query('INSERT INTO node_t VALUES ($1, $2)', [1, 'dup']);
    out.unique = null;
  } catch (e) {
    out.unique = { code: e.code, constraint: e.constraint, detail: e.detail };
  }
  r = await client.query('SELECT 1 AS after_error');
  out.after_error = r.rows[0].after_error;

  // a bigger result, rows as arrays
  r = await client.query({ text: 'SELECT g, md5(g::text) FROM generate_series(1, 20000) g', rowMode: 'array' });
  out.big_count = r.rowCount;
  out.big_last = r.rows[r.rows.length - 1];

  // multi-statement simple query
  r = await client.query("SELECT 1 AS a; SELECT 'b' AS b");
  out.multi = r.map((res) => res.rows);

  await client.query("DO $$ BEGIN RAISE NOTICE 'hello from node'; END $$");
  out.notices = notices;

  await client.end();
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((e) => {
  process.stderr.write('pg_client failed: ' + (e.stack || e) + '\n');
  process.exit(1);
});
