/*
 * key.c — result-cache keys (SHA-256 over length-prefixed fields), version
 * key names, the stored payload's sanity walk and the Lua scripts (key.h).
 */
#include "key.h"

#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/alloc.h"
#include "../protocol/pgwire.h"

/* ---- scripts -------------------------------------------------------------- */

/* Version keys live a day (QC_VERSION_TTL_S, the longest entry TTL) after
 * their creation or last bump, so per-row keys do not pile up: a key that
 * expired comes back with the time of its re-creation, greater than any
 * value it held (versions are at most the time of their last change, unless
 * bumped more than once a microsecond), so the entries that held the old
 * value simply miss. */
#define LUA_VERSION_OF                                                                                         \
	"local function now() local t = redis.call('TIME') "                                                    \
	"return t[1] .. string.format('%06d', tonumber(t[2])) end "                                            \
	"local function ver(k) "                                                                               \
	"local v = redis.call('GET', k) "                                                                      \
	"if not v then v = now() redis.call('SET', k, v, 'EX', " QC_VERSION_TTL_S ") end "                     \
	"return v end "

#define LUA_SEQ "local seq = redis.call('GET', '" QC_KEY_SEQ "') or '0' "

const char QC_LOOKUP_SCRIPT[] =
	LUA_VERSION_OF LUA_SEQ
	"local vs = {} "
	"for i = 2, #KEYS do vs[#vs + 1] = ver(KEYS[i]) end "
	"local cur = table.concat(vs, ',') "
	"local e = redis.call('GET', KEYS[1]) "
	"if e then local nl = string.find(e, '\\n', 1, true) "
	"if nl and string.sub(e, 1, nl - 1) == cur then "
	"return {1, cur, now(), seq, string.sub(e, nl + 1), redis.call('PTTL', KEYS[1])} end end "
	"return {0, cur, now(), seq}";

/* A bump increments each counter; one that is missing (never read, expired,
 * evicted, Redis restarted) starts at the time in microseconds instead, so
 * it never comes back to a value an old entry holds.  The new values are
 * appended to the log under the next sequence number (ids "<seq>-1",
 * consecutive: one entry per bump; a missing sequence starts at the time
 * too, and syncs behind it reset).  Then the lease registry (key.h): every
 * other instance with a lease in it must see this bump before the COMMIT
 * returns, so they are listed with the milliseconds their lease has left
 * (a whole lease for one that looks expired by less than a lease: Redis's
 * clock may have stepped forward), and told on the channel; a registry
 * younger than a lease (created now, or lost and created again), or one
 * that cannot be read, adds a wait until it is a lease old.  Nothing after
 * the XADD may fail the script (pcall): the bump happened.  Written for
 * speed: it runs before every committing write's ReadyForQuery is
 * released. */
const char QC_BUMP_SCRIPT[] =
	"local L = " QC_LEASE_MS " "
	"local t = redis.call('TIME') "
	"local us = t[1] * 1000000 + tonumber(t[2]) local ms = math.floor(us / 1000) "
	"local seq = redis.call('INCR', '" QC_KEY_SEQ "') "
	"if seq == 1 then seq = us redis.call('SET', '" QC_KEY_SEQ "', string.format('%d', seq)) end "
	"local log = {} "
	"for i = 1, #KEYS do local v = redis.call('INCR', KEYS[i]) "
	"if v == 1 then v = us redis.call('SET', KEYS[i], string.format('%d', v), 'EX', " QC_VERSION_TTL_S ") end "
	"log[2 * i - 1] = KEYS[i] log[2 * i] = string.format('%d', v) end "
	"local sq = string.format('%d', seq) "
	"redis.call('XADD', '" QC_KEY_LOG "', 'MAXLEN', '~', '" QC_LOG_MAX "', sq .. '-1', unpack(log)) "
	"local out = {sq, 0, 0} "
	"local reg = redis.pcall('HGETALL', '" QC_KEY_LEASES "') "
	"if type(reg) ~= 'table' or reg.err then out[2] = L else "
	"local ep = nil "
	"for i = 1, #reg, 2 do local e = tonumber(reg[i + 1]) "
	"if reg[i] == '" QC_LEASE_EPOCH "' then ep = e "
	"elseif reg[i] ~= ARGV[1] and e and e - ms > -L then local left = e - ms "
	"if left <= 0 or left > L then left = L end "
	"out[#out + 1] = reg[i] out[#out + 1] = left out[3] = out[3] + 1 end end "
	"if not ep or ep > ms then ep = ms "
	"redis.pcall('HSET', '" QC_KEY_LEASES "', '" QC_LEASE_EPOCH "', string.format('%d', ms)) end "
	"if ep + L > ms then out[2] = ep + L - ms end "
	"if out[3] > 0 then redis.pcall('PUBLISH', ARGV[2], 'b ' .. sq .. ' ' .. ARGV[1]) end end "
	"for i = 1, #log do out[#out + 1] = log[i] end "
	"return out";

/* The log since ARGV[1]: {seq} when nothing changed, {seq, 'log', key,
 * value, ...} with every bump after it in order, or {seq, 'reset'} when
 * the log cannot tell (first sync, Redis lost or trimmed it, too far
 * behind).  Before that, instance ARGV[2]'s lease (ARGV[3]: "-" leaves it,
 * "0" ends it, else its length in ms); registry entries expired for more
 * than a lease, or ending more than a lease ahead, are removed. */
const char QC_SYNC_SCRIPT[] =
	"local cur = redis.call('GET', '" QC_KEY_SEQ "') "
	"if not cur then local t = redis.call('TIME') cur = t[1] .. string.format('%06d', tonumber(t[2])) "
	"redis.call('SET', '" QC_KEY_SEQ "', cur) end "
	"if ARGV[3] ~= '-' then "
	"local L = " QC_LEASE_MS " "
	"local t = redis.call('TIME') local ms = t[1] * 1000 + math.floor(tonumber(t[2]) / 1000) "
	"local reg = redis.call('HGETALL', '" QC_KEY_LEASES "') local ep = false "
	"for i = 1, #reg, 2 do local e = tonumber(reg[i + 1]) "
	"if reg[i] == '" QC_LEASE_EPOCH "' then ep = true "
	"elseif not e or e <= ms - L or e > ms + L then redis.call('HDEL', '" QC_KEY_LEASES "', reg[i]) end end "
	"if not ep then redis.call('HSET', '" QC_KEY_LEASES "', '" QC_LEASE_EPOCH "', string.format('%d', ms)) end "
	"local len = tonumber(ARGV[3]) "
	"if len and len > 0 then redis.call('HSET', '" QC_KEY_LEASES "', ARGV[2], string.format('%d', ms + math.min(len, L))) "
	"else redis.call('HDEL', '" QC_KEY_LEASES "', ARGV[2]) end end "
	"if cur == ARGV[1] then return {cur} end "
	"local last = tonumber(ARGV[1]) local c = tonumber(cur) "
	"if last == 0 or c < last or c - last > " QC_SYNC_MAX_GAP " then return {cur, 'reset'} end "
	"local first = string.format('%d', last + 1) .. '-1' "
	"local es = redis.call('XRANGE', '" QC_KEY_LOG "', first, '+', 'COUNT', c - last) "
	"if #es ~= c - last or es[1][1] ~= first then return {cur, 'reset'} end "
	"local out = {cur, 'log'} "
	"for i = 1, #es do local f = es[i][2] for j = 1, #f do out[#out + 1] = f[j] end end "
	"return out";

/* Any bump of KEYS[1..nv] logged after sequence ARGV[2]?  Then (or when the
 * log cannot tell) the entries are not stored. */
const char QC_FILL_SCRIPT[] =
	LUA_VERSION_OF
	"local nv = tonumber(ARGV[1]) "
	"local cur = redis.call('GET', '" QC_KEY_SEQ "') or '0' "
	"if cur ~= ARGV[2] then "
	"local last = tonumber(ARGV[2]) local c = tonumber(cur) "
	"if last == 0 or c < last or c - last > " QC_SYNC_MAX_GAP " then return 0 end "
	"local first = string.format('%d', last + 1) .. '-1' "
	"local es = redis.call('XRANGE', '" QC_KEY_LOG "', first, '+', 'COUNT', c - last) "
	"if #es ~= c - last or es[1][1] ~= first then return 0 end "
	"local mine = {} for i = 1, nv do mine[KEYS[i]] = true end "
	"for i = 1, #es do local f = es[i][2] for j = 1, #f, 2 do if mine[f[j]] then return 0 end end end "
	"end "
	"local vs = {} "
	"for i = 1, nv do vs[#vs + 1] = ver(KEYS[i]) end "
	"local cur_v = table.concat(vs, ',') "
	"for i = nv + 1, #KEYS do "
	"redis.call('SET', KEYS[i], cur_v .. '\\n' .. ARGV[i - nv + 3], 'PX', ARGV[3]) end "
	"return #KEYS - nv";

/* ---- entry keys ----------------------------------------------------------- */

static void put_field(EVP_MD_CTX *md, const void *data, size_t len)
{
	uint8_t n[8];
	for (int i = 0; i < 8; i++)
		n[i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
	EVP_DigestUpdate(md, n, sizeof(n));
	if (len)
		EVP_DigestUpdate(md, data, len);
}

static void put_cstr(EVP_MD_CTX *md, const char *s)
{
	put_field(md, s ? s : "", s ? strlen(s) : 0);
}

/* A digest context and SHA-256 implementation per thread, made once: an
 * entry key is computed per statement looked up, and fetching the
 * algorithm and allocating a context each time cost more than the hash. */
static EVP_MD_CTX *entry_digest(void)
{
	static _Thread_local EVP_MD_CTX *md;
	static _Thread_local EVP_MD *sha256;
	if (!md) {
		md = EVP_MD_CTX_new();
		sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
		if (!md || !sha256)
			abort();
	}
	if (!EVP_DigestInit_ex2(md, sha256, NULL))
		abort();
	return md;
}

void qc_key_entry(const qc_key_input *in, char out[QC_ENTRY_KEY_LEN + 1])
{
	uint8_t digest[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;
	EVP_MD_CTX *md = entry_digest();
	put_cstr(md, "pgfold-cache-v1");
	put_cstr(md, in->database);
	put_cstr(md, in->user);
	put_field(md, in->startup, in->startup ? in->startup_len : 0);
	put_field(md, in->settings, in->settings ? in->settings_len : 0);
	put_field(md, in->local, in->local ? in->local_len : 0);
	put_field(md, &in->format, 1);
	put_field(md, in->sql, in->sql_len);
	if (in->format != 't')
		put_field(md, in->params, in->params ? in->params_len : 0);
	EVP_DigestFinal_ex(md, digest, &dlen);
	if (dlen != 32)
		abort(); /* SHA-256 */
	memcpy(out, "pgfold:e:", 9);
	pf_hex(digest, dlen, out + 9);
}

static void put_sized(pf_sb *out, uint32_t n, const void *data, size_t len)
{
	uint8_t b[4] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
	pf_sb_append_n(out, (const char *)b, sizeof(b));
	if (len)
		pf_sb_append_n(out, (const char *)data, len);
}

void qc_key_bind(pf_sb *out, int16_t ntypes, const uint32_t *types, int16_t nformats, const uint8_t *formats,
		 int16_t nparams, const uint8_t *params, size_t params_len, int16_t nresult_formats,
		 const uint8_t *result_formats)
{
	size_t nt = ntypes > 0 ? (size_t)ntypes : 0;
	put_sized(out, (uint32_t)nt, types, nt * sizeof(uint32_t));
	put_sized(out, (uint32_t)(nformats > 0 ? nformats : 0), formats, nformats > 0 ? 2 * (size_t)nformats : 0);
	put_sized(out, (uint32_t)(nparams > 0 ? nparams : 0), params, params_len);
	put_sized(out, (uint32_t)(nresult_formats > 0 ? nresult_formats : 0), result_formats,
		  nresult_formats > 0 ? 2 * (size_t)nresult_formats : 0);
}

/* ---- version keys --------------------------------------------------------- */

/* "pgfold:v:<database><kind><name>[:<value>]", built without printf: a
 * lookup builds several per statement. */
static void version_key(pf_sb *sb, const char *database, const char *kind, const char *name, const char *value)
{
	pf_sb_append(sb, "pgfold:v:");
	pf_sb_append(sb, database);
	pf_sb_append(sb, kind);
	if (name)
		pf_sb_append(sb, name);
	if (value) {
		pf_sb_append(sb, ":");
		pf_sb_append(sb, value);
	}
}

void qc_key_table(pf_sb *sb, const char *database, const char *table)
{
	version_key(sb, database, ":t:", table, NULL);
}

void qc_key_database(pf_sb *sb, const char *database)
{
	version_key(sb, database, ":all", NULL, NULL);
}

static char *sb_take(pf_sb *sb)
{
	char *s = pf_malloc(sb->len + 1);
	memcpy(s, pf_sb_str(sb), sb->len + 1);
	pf_sb_reset(sb);
	return s;
}

static bool has_key(const qc_keys *k, const char *key)
{
	for (size_t i = 0; i < k->n; i++)
		if (strcmp(k->keys[i], key) == 0)
			return true;
	return false;
}

void qc_key_row(pf_sb *sb, const char *database, const char *table, const char *value)
{
	version_key(sb, database, ":r:", table, value);
}

void qc_key_unkeyed(pf_sb *sb, const char *database, const char *table)
{
	version_key(sb, database, ":n:", table, NULL);
}

/* Append the key in sb unless it is there already; false when full. */
static bool add_version(qc_keys *out, pf_sb *sb)
{
	if (has_key(out, pf_sb_str(sb))) {
		pf_sb_reset(sb);
		return true;
	}
	if (out->n == QC_MAX_VERSION_KEYS)
		return false;
	out->keys[out->n++] = sb_take(sb);
	return true;
}

bool qc_key_versions(const char *database, const rw_shape *shape, const char *row, qc_keys *out)
{
	pf_sb sb;
	pf_sb_init(&sb);
	memset(out, 0, sizeof(*out));
	pf_sb_append(&sb, QC_KEY_GLOBAL);
	out->keys[out->n++] = sb_take(&sb);
	qc_key_database(&sb, database);
	out->keys[out->n++] = sb_take(&sb);
	bool keyed = row && shape && shape->nrelations == 1;
	bool ok = true;
	for (size_t i = 0; shape && i < shape->nrelations && ok; i++) {
		const char *name = shape->relations[i].name;
		qc_key_table(&sb, database, name);
		ok = add_version(out, &sb);
		if (keyed)
			qc_key_row(&sb, database, name, row);
		else
			qc_key_unkeyed(&sb, database, name);
		ok = ok && add_version(out, &sb);
	}
	pf_sb_free(&sb);
	return ok;
}

void qc_keys_free(qc_keys *k)
{
	for (size_t i = 0; i < k->n; i++)
		pf_free(k->keys[i]);
	k->n = 0;
}

/* ---- payloads ------------------------------------------------------------- */

bool qc_payload_check(const char *payload, size_t len, char *tag, size_t size)
{
	const uint8_t *p = (const uint8_t *)payload;
	size_t pos = 0;
	bool done = false;
	while (pos < len) {
		if (done || len - pos < PGW_HEADER_LEN)
			return false;
		uint8_t type = p[pos];
		size_t mlen = pgw_get_u32(p + pos + 1);
		if (mlen < 4 || mlen > len - pos - 1 ||
		    (type != PGW_BE_ROW_DESC && type != PGW_BE_DATA_ROW && type != PGW_BE_COMMAND_COMPLETE))
			return false;
		if (type == PGW_BE_COMMAND_COMPLETE) {
			const char *body = payload + pos + PGW_HEADER_LEN;
			size_t blen = mlen - 4;
			if (blen == 0 || body[blen - 1] != '\0' || blen > size)
				return false;
			memcpy(tag, body, blen);
			done = true;
		}
		pos += 1 + mlen;
	}
	return done;
}
