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
//	{prefix:name}:c  channel: the events of each append, one message,
//	                 each event "<seq> <epoch> <len(from)> <len(id)>
//	                 <len(data)> <from><id><data>", one after the other
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

// appendScript commits a batch of events, in order, each unless its
// publish id is known (also from earlier in the batch). ARGV[4] the
// number of events n, ARGV[5] window, ARGV[6] dedup window, ARGV[7]
// channel, ARGV[8] TTL in seconds (0: none), then from, id and data of
// each event. Returns {epoch, seq1, dup1, seq2, dup2, ...}, dup 0 or 1.
// The events appended go out in one PUBLISH.
var appendScript = rueidis.NewLuaScript(prologue + `
local n = tonumber(ARGV[4])
local out = {epoch}
local msg = {}
for k = 0, n - 1 do
  local from, id, data = ARGV[9 + 3 * k], ARGV[10 + 3 * k], ARGV[11 + 3 * k]
  local key, d
  if id ~= '' then
    key = #from .. ':' .. from .. id
    d = redis.call('ZSCORE', dedup, key)
  end
  if d then
    out[#out + 1] = tonumber(d)
    out[#out + 1] = 1
  else
    seq = redis.call('HINCRBY', meta, 's', 1)
    redis.call('XADD', stream, 'MAXLEN', '~', ARGV[5], string.format('%d-0', seq), 'f', from, 'i', id, 'd', data)
    if key then
      redis.call('ZADD', dedup, seq, key)
    end
    msg[#msg + 1] = string.format('%d %s %d %d %d ', seq, epoch, #from, #id, #data) .. from .. id .. data
    out[#out + 1] = seq
    out[#out + 1] = 0
  end
end
if #msg > 0 then
  redis.call('ZREMRANGEBYRANK', dedup, 0, -1 - tonumber(ARGV[6]))
  local ttl = tonumber(ARGV[8])
  if ttl > 0 then
    redis.call('EXPIRE', meta, ttl)
    redis.call('EXPIRE', stream, ttl)
    redis.call('EXPIRE', dedup, ttl)
  end
  redis.call('PUBLISH', ARGV[7], table.concat(msg))
end
return out
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
