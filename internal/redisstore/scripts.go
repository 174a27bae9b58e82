package redisstore

import "github.com/redis/go-redis/v9"

// commitScript is the only writer of a session: it checks the stored
// version (and leader term), writes the record, appends the change's
// operations to the session's log and publishes them, all in one atomic
// step, so the log's order, the publish order and the version order are
// one and the same.
//
// KEYS[1] the state hash, KEYS[2] the log stream, KEYS[3] the charts hash.
// ARGV[1] mode: "cas" (stored version must be ARGV[2] and term ARGV[3],
//
//	or older than ARGV[2] with a term no higher: see below),
//	"newer" (stored must be absent, or older with a term no higher)
//
// ARGV[4] new version, ARGV[5] new term, ARGV[6] record JSON,
// ARGV[7] TTL ms, ARGV[8] log MAXLEN, ARGV[9] PUBLISH or SPUBLISH,
// ARGV[10] channel, ARGV[11] body of the published message,
// ARGV[12] L, then L chart fields the record refers to (every other field
// of the charts hash is dropped), then W, then W pairs of chart field and
// text to store, then four per operation: kind, member, event, payload.
//
// The published message is "<ids>\n<prev>\n<body>": the log ids of the
// operations (comma-separated), the log id before them, and the body the
// caller built. The script never decodes JSON, so payloads keep every digit
// Go wrote.
//
// A stored record older than the one the command was evaluated on (and
// under no newer leader term) is a record that lost changes the writer has
// seen: Redis replicates asynchronously, so a master can acknowledge a
// commit and die before its replica has it, and the promoted replica holds
// an older record and log. The copy the command was evaluated on includes
// those acknowledged changes, so the commit is written over the older
// record (the "newer" rule) instead of being refused, which would make
// the writer adopt the older record and lose them; the reply says so
// (repaired = 1).
//
// Returns {1, lastId, prevId, ids, repaired} when written, {0, storedRecord}
// when not.
var commitScript = redis.NewScript(`
local cur = redis.call('HMGET', KEYS[1], 'v', 'term', 'lastid', 'rec')
local v = tonumber(cur[1] or '0')
local term = tonumber(cur[2] or '0')
local nv = tonumber(ARGV[4])
local nt = tonumber(ARGV[5])
local repaired = 0
if ARGV[1] == 'cas' then
  if v ~= tonumber(ARGV[2]) or term ~= tonumber(ARGV[3]) then
    if not cur[1] or v >= tonumber(ARGV[2]) or term > tonumber(ARGV[3]) then
      return {0, cur[4] or ''}
    end
    repaired = 1
  end
elseif cur[1] and (v >= nv or term > nt) then
  return {0, cur[4] or ''}
end
local prev = cur[3] or '0-0'
local nlive = tonumber(ARGV[12])
local w = 13 + nlive
local nw = tonumber(ARGV[w])
local first = w + 1 + 2 * nw
local ids = {}
for i = first, #ARGV, 4 do
  local args = {'XADD', KEYS[2], 'MAXLEN', '~', ARGV[8], '*', 'v', ARGV[4], 'k', ARGV[i]}
  if ARGV[i+1] ~= '' then args[#args+1] = 'm'; args[#args+1] = ARGV[i+1] end
  if ARGV[i+2] ~= '' then args[#args+1] = 'e'; args[#args+1] = ARGV[i+2] end
  if ARGV[i+3] ~= '' then args[#args+1] = 'p'; args[#args+1] = ARGV[i+3] end
  ids[#ids+1] = redis.call(unpack(args))
end
local last = ids[#ids] or prev
redis.call('HSET', KEYS[1], 'v', ARGV[4], 'term', ARGV[5], 'rec', ARGV[6], 'lastid', last)
redis.call('PEXPIRE', KEYS[1], ARGV[7])
redis.call('PEXPIRE', KEYS[2], ARGV[7])
for j = w + 1, first - 1, 2 do
  redis.call('HSET', KEYS[3], ARGV[j], ARGV[j + 1])
end
local live = {}
for j = 13, 12 + nlive do live[ARGV[j]] = true end
for _, f in ipairs(redis.call('HKEYS', KEYS[3])) do
  if not live[f] then redis.call('HDEL', KEYS[3], f) end
end
redis.call('PEXPIRE', KEYS[3], ARGV[7])
local joined = table.concat(ids, ',')
if #ids > 0 then
  redis.call(ARGV[9], ARGV[10], joined .. '\n' .. prev .. '\n' .. ARGV[11])
end
return {1, last, prev, joined, repaired}
`)

// savePIDScript stores a socket's recovery record unless another instance
// has taken it over meanwhile (its value starts with another instance id):
// a half-open socket noticed late must not undo a recovery elsewhere.
//
// KEYS[1] the pid key; ARGV[1] "<instance>\n", ARGV[2] the value,
// ARGV[3] TTL ms.
var savePIDScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur and string.sub(cur, 1, #ARGV[1]) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
`)

// takePIDScript takes a socket's recovery record for instance ARGV[1],
// unless the record says its socket is live on another instance: that one
// is returned untouched ({0, value}) so the caller can ask whether that
// instance is still alive before taking it with takeIfScript. {1, value}:
// taken; nil: there is none.
//
// KEYS[1] the pid key; ARGV[1] "<instance>\n".
var takePIDScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if not cur then return nil end
if string.sub(cur, 1, #ARGV[1]) ~= ARGV[1] then
  local nl = string.find(cur, '\n', 1, true)
  if nl and string.sub(cur, nl + 1, nl + 2) == '1\n' then
    return {0, cur}
  end
end
redis.call('DEL', KEYS[1])
return {1, cur}
`)

// takeIfScript deletes the pid key if it still holds ARGV[1]: the take of
// a record whose instance was found dead, atomic against another
// instance's take and against the owner's renewal.
var takeIfScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
`)
