package redislog

import "github.com/redis/rueidis"

// Each log is three keys and a channel, hash-tagged with the log's name so
// that they live in one slot (Redis Cluster):
//
//	{prefix:name}:m  hash: e = the epoch, s = the seq of the head
//	{prefix:name}:s  stream: one entry per event, ID <seq>-0, fields
//	                 f (from), i (publish id), d (data); trimmed to about
//	                 the window with MAXLEN ~
//	{prefix:name}:d  sorted set: the last dedup-window publish ids,
//	                 member <len(from)>:<from><id>, score its seq
//	{prefix:name}:c  channel: every committed event, as
//	                 "<seq> <epoch> <len(from)> <len(id)> <from><id><data>"
//
// Every script starts with the same prologue. It reads the epoch and head,
// and starts a new epoch (deleting the stream and the dedup set) when
// there is none (a new log, or Redis lost its data) or when the head is
// below a seq the calling node has already seen in this epoch (an
// asynchronous failover lost the newest writes): a seq is never given
// twice within an epoch.
//
// KEYS: meta, stream, dedup. ARGV[1] node id, ARGV[2] the epoch the node
// knows, ARGV[3] the highest seq it has seen in it.
const prologue = `
local meta, stream, dedup = KEYS[1], KEYS[2], KEYS[3]
local function newEpoch()
  local t = redis.call('TIME')
  local e = ARGV[1] .. string.format('%s%06d', t[1], tonumber(t[2]))
  redis.call('DEL', stream, dedup)
  redis.call('HSET', meta, 'e', e, 's', 0)
  return e
end
local epoch = redis.call('HGET', meta, 'e')
local seq = 0
if not epoch then
  epoch = newEpoch()
else
  seq = tonumber(redis.call('HGET', meta, 's'))
  if epoch == ARGV[2] and seq < tonumber(ARGV[3]) then
    epoch = newEpoch()
    seq = 0
  end
end
`

// appendScript commits one event unless its publish id is known.
// ARGV[4] from, ARGV[5] id, ARGV[6] data, ARGV[7] window, ARGV[8] dedup
// window, ARGV[9] channel, ARGV[10] TTL in seconds (0: none).
// Returns {epoch, seq, duplicate (0 or 1)}.
var appendScript = rueidis.NewLuaScript(prologue + `
local from, id = ARGV[4], ARGV[5]
local key
if id ~= '' then
  key = #from .. ':' .. from .. id
  local d = redis.call('ZSCORE', dedup, key)
  if d then
    return {epoch, tonumber(d), 1}
  end
end
seq = redis.call('HINCRBY', meta, 's', 1)
redis.call('XADD', stream, 'MAXLEN', '~', ARGV[7], string.format('%d-0', seq), 'f', from, 'i', id, 'd', ARGV[6])
if key then
  redis.call('ZADD', dedup, seq, key)
  redis.call('ZREMRANGEBYRANK', dedup, 0, -1 - tonumber(ARGV[8]))
end
local ttl = tonumber(ARGV[10])
if ttl > 0 then
  redis.call('EXPIRE', meta, ttl)
  redis.call('EXPIRE', stream, ttl)
  redis.call('EXPIRE', dedup, ttl)
end
redis.call('PUBLISH', ARGV[9], string.format('%d %s %d %d ', seq, epoch, #from, #id) .. from .. id .. ARGV[6])
return {epoch, seq, 0}
`)

// headScript returns {epoch, seq}.
var headScript = rueidis.NewLuaScript(prologue + `
return {epoch, seq}
`)

// readScript returns {epoch, seq, gone (0 or 1), entries}: up to ARGV[6]
// entries after seq ARGV[5] of epoch ARGV[4], gone when that position is
// not in the log: another epoch, beyond the head, or before the last
// ARGV[7] (the window) events.
var readScript = rueidis.NewLuaScript(prologue + `
local after = tonumber(ARGV[5])
if epoch ~= ARGV[4] or after > seq or after < seq - tonumber(ARGV[7]) then
  return {epoch, seq, 1, {}}
end
if after == seq then
  return {epoch, seq, 0, {}}
end
local recs = redis.call('XRANGE', stream, string.format('%d-0', after + 1), '+', 'COUNT', ARGV[6])
return {epoch, seq, 0, recs}
`)
