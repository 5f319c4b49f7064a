import { createHash } from 'node:crypto';

/**
 * Lua scripts of the Redis backend: one per operation, each with a fast path for the uncontended
 * case. Key layout, handoff, liveness, fencing and atomicity under OOM / READONLY are described in
 * docs/architecture.md ("Redis backend"); comments below say why a line is as it is.
 */

/**
 * Fencing tokens: max(counter of the lock key's hash slot + 1, `floor` + 1, server time in µs),
 * stored back (KEYS: the 4th key of each lock). The grant and the counter change in one script,
 * so they replicate and persist together: when a grant survived (replicated, or kept by its
 * node), so did a counter at least as high, and the next token is greater whatever the server
 * clock says; a clock stepped back or a lagging promoted replica only stops moving it forward.
 * The clock term keeps tokens above those of any writer that uses the clock alone (an earlier
 * version of this package, run against the same Redis before or after this one) and above the
 * lost ones after a data loss, when the counter is gone; `floor` (a handoff's last token) covers
 * a counter lost while its lock survived. `clockUs`, when the caller read the clock already,
 * spares a TIME. GETSET is the first write: on a full Redis (maxmemory) it is refused before
 * anything changed. It writes the clock-and-floor candidate while it reads the counter, which
 * spares a call (each costs the server more than the command it runs); a SET follows only when
 * the counter is ahead of the clock (several grants in one µs, or a clock stepped back). GETSET,
 * not SET ... GET, because that needs Redis 6.2. Returns the token and its decimal text: Redis
 * prints a number argument with snprintf on every call, and joining TIME's digits costs less.
 */
const FENCE_HELPER = `
local function nextFencing(counter, floor, clockUs)
  local text
  if not clockUs then
    local time = redis.call('TIME')
    text = time[1] .. string.sub('00000' .. time[2], -6)
    clockUs = tonumber(text)
  end
  local fencing = math.max(floor + 1, clockUs)
  if not text or fencing ~= clockUs then text = string.format('%.0f', fencing) end
  local last = tonumber(redis.call('GETSET', counter, text))
  if last and last + 1 > fencing then
    fencing = last + 1
    text = string.format('%.0f', fencing)
    redis.call('SET', counter, text)
  end
  return fencing, text
end
`;

/**
 * Queue helpers, included only where a script takes its slow path, after FENCE_HELPER. Expects
 * `nowUs` (server time in µs) and `claimWindow` (ms) as locals of the including script.
 *
 * Integer-valued numbers (µs times, fencing tokens, scores) go to redis.call as Lua numbers:
 * Redis prints them as integers (exactly, below 10^17), which spares a string.format per value.
 */
const QUEUE_HELPERS = `
local nowMs = math.floor(nowUs / 1000)

-- Removes token from a queue, deleting the queue once it is empty. Returns the entries left.
local function dropWaiter(queue, waiters, token)
  redis.call('ZREM', queue, token)
  redis.call('HDEL', waiters, token)
  local left = redis.call('ZCARD', queue)
  if left == 0 then redis.call('DEL', queue, waiters) end
  return left
end

-- Whether any connection of this server is subscribed to a waiter's instance channel. None means
-- its process died (the connection closed with it) or its subscriber is reconnecting right now
-- (it then queues again when it re-checks, within half the claim window). NUMSUB sends nothing,
-- and counts this server's subscribers only, which is where every instance subscribes.
local function listening(channel)
  return redis.call('PUBSUB', 'NUMSUB', channel)[2] > 0
end

-- The oldest waiter whose deadline has not passed and whose instance listens (token, score, ttl,
-- wake channel, attempt), purging the others ahead of it. Each such entry is removed once:
-- amortised O(1) per entry ever queued.
local function liveHead(queue, waiters)
  while true do
    local first = redis.call('ZRANGE', queue, 0, 0, 'WITHSCORES')
    local head = first[1]
    if not head then return nil end
    local raw = redis.call('HGET', waiters, head)
    if raw then
      local deadline, ttl, attempt, channel = string.match(raw, '^(%d+)|(%d+)|(%d+)|(.*)$')
      if deadline and tonumber(deadline) > nowMs and listening(channel) then
        return head, tonumber(first[2]), tonumber(ttl), channel, attempt
      end
    end
    dropWaiter(queue, waiters, head)
  end
end

-- Reserves a lock that is free, or whose grant the caller gives up, for its oldest live waiter
-- for the claim window, and wakes that waiter. The waiter leaves the queue (if it died, the
-- reservation simply expires and the next one gets its turn); its queue score stays in 'c', so
-- it keeps its place in the global order. The wake-up message "<attempt>|<claim ms>|<fencing>|
-- <token>" offers the lock to a single-key waiter (attempt > 0: the attempt that wrote the entry
-- served), which may then take it without another round trip and claim it with extend. The live
-- waiter now first in line gets "r|<claim ms>|<token>": re-check when the reservation ends, in
-- case the reserved waiter never claims (frozen, or gone with its connection still open).
-- Messages go out after every write, so a script refused at its first write (READONLY, OOM)
-- offers nothing.
-- Returns the reservation in ms, or nil when nobody waits (the lock is then left as it was).
local function handOff(lock, queue, waiters, fence, lastFencing)
  local head, score, ttl, channel, attempt = liveHead(queue, waiters)
  if not head then return nil end
  local claim = math.max(1, math.min(claimWindow, ttl))
  local left = dropWaiter(queue, waiters, head)
  -- After dropWaiter's ZREM: the counter's GETSET, refused under maxmemory, must not be a release's first write.
  local _, fencing = nextFencing(fence, lastFencing, nowUs)
  redis.call('DEL', lock)
  if left > 0 then
    redis.call('HSET', lock, 'o', head, 'f', fencing, 'c', score, 'q', '1')
  else
    redis.call('HSET', lock, 'o', head, 'f', fencing, 'c', score)
  end
  redis.call('PEXPIRE', lock, claim)
  if left > 0 then
    local nextHead, _, _, nextChannel = liveHead(queue, waiters)
    if nextHead then redis.call('PUBLISH', nextChannel, 'r|' .. claim .. '|' .. nextHead) end
  end
  redis.call('PUBLISH', channel, attempt .. '|' .. claim .. '|' .. fencing .. '|' .. head)
  return claim
end
`;

/**
 * KEYS: (lock, queue, waiters, fencing counter) per lock key. ARGV: token, ttl,
 * "<queueFor>:<attempt>" (attempt 0 for a multi-key request: no handoff offer),
 * "<claimWindow>:<wake channel>" (one constant per backend instance). Packed because every
 * argument costs the server a Lua string. Returns, when granted, the fencing token shared by
 * every key (an integer > 0) or {fencing...} one per key; when busy, -retryAfter (an integer <= -1). Integers spare the server building and
 * the client parsing an array on the common paths.
 *
 * A multi-key waiter is handed each key separately (FIFO per key) and keeps the keys reserved
 * for it while it waits for the others, renewing the reservations on every attempt (so it
 * retries within half the claim window). Queue scores form one global order: server time on
 * arrival, and every later attempt reuses the waiter's oldest score, queued or recorded on a key
 * handed to it. A waiter gives a handed key up to an older live waiter queued for it instead of
 * keeping it; the oldest waiter never gives a key up, so it gets every key it waits for and two
 * multi-key waiters cannot keep each other's keys until their waits end.
 */
export const ACQUIRE_LUA = `
local token = ARGV[1]
local ttl = ARGV[2]
local n = #KEYS

${FENCE_HELPER}
-- Fast path: no lock and no queue on any key, so a plain grant.
local clear = true
for i = 1, n, 4 do
  if redis.call('EXISTS', KEYS[i], KEYS[i + 1]) ~= 0 then
    clear = false
    break
  end
end
if clear then
  -- The counter's GETSET first: on a full Redis (maxmemory) the grant is refused before anything changed.
  if n == 4 then
    local fencing, text = nextFencing(KEYS[4], 0)
    redis.call('HSET', KEYS[1], 'o', token, 'f', text)
    redis.call('PEXPIRE', KEYS[1], ttl)
    return fencing
  end
  -- Keys of one slot share its counter, hence one token; keys of several slots get one each.
  local issued, result, shared = {}, {}, true
  for i = 1, n, 4 do
    local fencing = issued[KEYS[i + 3]]
    if not fencing then
      fencing = nextFencing(KEYS[i + 3], 0)
      issued[KEYS[i + 3]] = fencing
    end
    redis.call('HSET', KEYS[i], 'o', token, 'f', fencing)
    redis.call('PEXPIRE', KEYS[i], ttl)
    result[#result + 1] = fencing
    shared = shared and fencing == result[1]
  end
  if shared then return result[1] end
  return result
end
local time = redis.call('TIME')
local nowUs = time[1] * 1000000 + time[2]

local queueFor, attempt = string.match(ARGV[3], '^(%d+):(%d+)$')
queueFor = tonumber(queueFor)
local claimWindow, channel = string.match(ARGV[4], '^(%d+):(.*)$')
claimWindow = tonumber(claimWindow)
${QUEUE_HELPERS}
local count = n / 4
-- state: 'mine' (granted to us), 'handed' (reserved for us, unclaimed), 'busy' (someone else's),
-- 'free' (no lock, and we are first in line or nobody waits), 'behind' (no lock, but a live
-- waiter is ahead of us).
local state, found = {}, {}
local grantable = true
for i = 1, count do
  local lock, queue, waiters = KEYS[4 * i - 3], KEYS[4 * i - 2], KEYS[4 * i - 1]
  local fields = redis.call('HMGET', lock, 'o', 'f', 'c', 'q')
  found[i] = fields
  if fields[1] == token then
    state[i] = fields[3] and 'handed' or 'mine'
  elseif fields[1] then
    state[i] = 'busy'
    grantable = false
  else
    local head = liveHead(queue, waiters)
    if head == nil or head == token then
      state[i] = 'free'
    else
      state[i] = 'behind'
      grantable = false
    end
  end
end

if grantable then
  local result, issued = {}, {}
  for i = 1, count do
    local lock, queue, waiters = KEYS[4 * i - 3], KEYS[4 * i - 2], KEYS[4 * i - 1]
    local fence = KEYS[4 * i]
    local fencing
    if state[i] == 'free' then
      fencing = issued[fence]
      if not fencing then
        fencing = nextFencing(fence, 0, nowUs)
        issued[fence] = fencing
      end
      redis.call('HSET', lock, 'o', token, 'f', fencing)
      redis.call('PEXPIRE', lock, ttl)
      -- Leave the queue; flag the lock if others still wait, so its release looks for them.
      if redis.call('ZSCORE', queue, token) and dropWaiter(queue, waiters, token) > 0 then
        redis.call('HSET', lock, 'q', '1')
      end
    else
      -- A token leaves a key's queue when the key is handed to it and never queues on a key it
      -- holds, so there is no entry of ours to remove here.
      fencing = tonumber(found[i][2])
      if state[i] == 'handed' then redis.call('HDEL', lock, 'c') end
      redis.call('PEXPIRE', lock, ttl)
    end
    result[i] = fencing
  end
  if count == 1 then return result[1] end
  return result
end

-- Our place in the global order: the oldest score we have, or, for a newcomer, strictly behind
-- every current tail (even within one microsecond).
local score = nil
local handed = false
for i = 1, count do
  local s = nil
  if state[i] == 'handed' then
    handed = true
    s = tonumber(found[i][3])
  elseif state[i] ~= 'mine' then
    s = tonumber(redis.call('ZSCORE', KEYS[4 * i - 2], token))
  end
  if s and (not score or s < score) then score = s end
end
if not score and (queueFor > 0 or handed) then
  local tail = 0
  for i = 1, count do
    if state[i] ~= 'mine' and state[i] ~= 'handed' then
      local last = redis.call('ZRANGE', KEYS[4 * i - 2], -1, -1, 'WITHSCORES')[2]
      if last then tail = math.max(tail, tonumber(last)) end
    end
  end
  score = math.max(nowUs, tail + 1)
end

local retry = 1
local hold = nil
for i = 1, count do
  local lock, queue, waiters = KEYS[4 * i - 3], KEYS[4 * i - 2], KEYS[4 * i - 1]
  local fence = KEYS[4 * i]
  if state[i] == 'busy' then
    local pttl = redis.call('PTTL', lock)
    if pttl < 0 then pttl = claimWindow end
    retry = math.max(retry, pttl)
  elseif state[i] == 'behind' then
    -- The key expired or was given up while someone waited: reserve it for the queue head.
    local claim = handOff(lock, queue, waiters, fence, 0)
    if claim then
      retry = math.max(retry, claim)
      state[i] = 'reserved'
    end
  elseif state[i] == 'handed' then
    local head, headScore = liveHead(queue, waiters)
    if head and headScore < score then
      -- An older waiter needs this key: give it up and queue again behind it.
      retry = math.max(retry, handOff(lock, queue, waiters, fence, tonumber(found[i][2]) or 0) or 1)
      state[i] = 'reserved'
    else
      local keep = math.max(1, math.min(claimWindow, tonumber(ttl)))
      redis.call('PEXPIRE', lock, keep)
      if not hold or keep < hold then hold = keep end
    end
  end
end
if hold then retry = math.max(1, math.min(retry, math.floor(hold / 2))) end

if queueFor > 0 then
  local entry = string.format('%.0f', nowMs + queueFor) .. '|' .. ttl .. '|' .. attempt .. '|'
    .. channel
  for i = 1, count do
    local s = state[i]
    if s ~= 'mine' and s ~= 'handed' then
      local lock, queue, waiters = KEYS[4 * i - 3], KEYS[4 * i - 2], KEYS[4 * i - 1]
      redis.call('ZADD', queue, score, token)
      redis.call('HSET', waiters, token, entry)
      if redis.call('PTTL', queue) < queueFor then
        redis.call('PEXPIRE', queue, queueFor)
        redis.call('PEXPIRE', waiters, queueFor)
      end
      -- The lock is held (busy) or was just reserved: flag it so its release finds the queue.
      if (s == 'busy' and not found[i][4]) or s == 'reserved' then
        redis.call('HSET', lock, 'q', '1')
      end
    end
  end
end
return -retry
`;

/**
 * KEYS: (lock, queue, waiters, fencing counter) per lock key. ARGV: token, claimWindow. Deletes
 * every key still
 * owned by the token and, when its `q` flag says someone may wait, hands it to the next live
 * waiter. Returns 1 when all keys were owned.
 */
export const RELEASE_LUA = `
local token = ARGV[1]
local released = 1
local queued = nil
for i = 1, #KEYS, 4 do
  local found = redis.call('HMGET', KEYS[i], 'o', 'q')
  if found[1] == token then
    if found[2] then
      queued = queued or {}
      queued[#queued + 1] = i
    else
      redis.call('DEL', KEYS[i])
    end
  else
    released = 0
  end
end
if not queued then return released end

local claimWindow = tonumber(ARGV[2])
local time = redis.call('TIME')
local nowUs = time[1] * 1000000 + time[2]
${FENCE_HELPER}
${QUEUE_HELPERS}
for _, i in ipairs(queued) do
  local lastFencing = tonumber(redis.call('HGET', KEYS[i], 'f')) or 0
  if not handOff(KEYS[i], KEYS[i + 1], KEYS[i + 2], KEYS[i + 3], lastFencing) then
    redis.call('DEL', KEYS[i])
  end
end
return released
`;

/**
 * KEYS: every lock HASH of the batch, request after request. ARGV: (key count, token, ttl) per
 * request. Extends a request only if all its keys are owned by its token; a key handed to the
 * token and not claimed yet counts as owned, and is claimed. Returns 1/0 per request.
 */
export const EXTEND_LUA = `
local results = {}
local k = 0
for a = 1, #ARGV, 3 do
  local n = tonumber(ARGV[a])
  local token = ARGV[a + 1]
  local ttl = ARGV[a + 2]
  local held = 1
  local unclaimed = nil
  for j = k + 1, k + n do
    local found = redis.call('HMGET', KEYS[j], 'o', 'c')
    if found[1] ~= token then
      held = 0
      break
    end
    if found[2] then
      unclaimed = unclaimed or {}
      unclaimed[#unclaimed + 1] = KEYS[j]
    end
  end
  if held == 1 then
    for j = k + 1, k + n do redis.call('PEXPIRE', KEYS[j], ttl) end
    if unclaimed then
      for _, key in ipairs(unclaimed) do redis.call('HDEL', key, 'c') end
    end
  end
  results[#results + 1] = held
  k = k + n
end
return results
`;

/**
 * KEYS: (lock, queue, waiters, fencing counter) per lock key. ARGV: token, claimWindow. Removes
 * the token's queue
 * entries and releases every key the token holds, claimed or not (a handoff it never claimed, or
 * a grant whose answer was lost), handing each to its next live waiter. A key left free with
 * live waiters is handed on too, since the entry removed may have been the one everybody else
 * was queued behind.
 */
export const CANCEL_LUA = `
local token = ARGV[1]
local claimWindow = tonumber(ARGV[2])
local time = redis.call('TIME')
local nowUs = time[1] * 1000000 + time[2]
${FENCE_HELPER}
${QUEUE_HELPERS}
for i = 1, #KEYS, 4 do
  local lock, queue, waiters, fence = KEYS[i], KEYS[i + 1], KEYS[i + 2], KEYS[i + 3]
  if redis.call('ZSCORE', queue, token) then dropWaiter(queue, waiters, token) end
  local found = redis.call('HMGET', lock, 'o', 'f')
  if found[1] == token then
    if not handOff(lock, queue, waiters, fence, tonumber(found[2]) or 0) then
      redis.call('DEL', lock)
    end
  elseif not found[1] then
    handOff(lock, queue, waiters, fence, 0)
  end
end
return 1
`;

/** KEYS: one lock HASH. Returns {0} when free, else {1, pttl, fencing as a string}. */
export const INSPECT_LUA = `
local found = redis.call('HMGET', KEYS[1], 'o', 'f')
if not found[1] then return {0} end
return {1, redis.call('PTTL', KEYS[1]), found[2] or ''}
`;

/** A Lua script with its SHA1, as EVALSHA needs it. */
export class RedisScript {
  /** SHA1 hex of `source`. */
  readonly sha: string;

  constructor(
    /** Name for error messages. */
    readonly name: string,
    /** Lua source. */
    readonly source: string,
  ) {
    this.sha = createHash('sha1').update(source).digest('hex');
  }
}

/** The backend's scripts, one per operation. */
export interface RedisScripts {
  readonly acquire: RedisScript;
  readonly release: RedisScript;
  readonly extend: RedisScript;
  readonly cancel: RedisScript;
  readonly inspect: RedisScript;
}

/** The scripts for a single Redis server (or a primary with replicas). */
export const SCRIPTS: RedisScripts = {
  acquire: new RedisScript('acquire', ACQUIRE_LUA),
  release: new RedisScript('release', RELEASE_LUA),
  extend: new RedisScript('extend', EXTEND_LUA),
  cancel: new RedisScript('cancel', CANCEL_LUA),
  inspect: new RedisScript('inspect', INSPECT_LUA),
};

/**
 * A script's Redis Cluster rendering: sharded pub/sub. Classic PUBLISH crosses the cluster bus
 * to every node, and NUMSUB counts only the node's own subscribers, so a waiter subscribed
 * elsewhere would look dead. A wake channel hashes to its lock's slot (see the Cluster
 * subscriber), so SPUBLISH stays on the slot's shard, where SHARDNUMSUB counts the waiter.
 */
function forCluster(script: RedisScript): RedisScript {
  const source = script.source
    .replaceAll("redis.call('PUBLISH',", "redis.call('SPUBLISH',")
    .replaceAll("redis.call('PUBSUB', 'NUMSUB',", "redis.call('PUBSUB', 'SHARDNUMSUB',");
  return new RedisScript(script.name, source);
}

/** The scripts for Redis Cluster (Redis 7 or later, for sharded pub/sub). */
export const CLUSTER_SCRIPTS: RedisScripts = {
  acquire: forCluster(SCRIPTS.acquire),
  release: forCluster(SCRIPTS.release),
  extend: SCRIPTS.extend,
  cancel: forCluster(SCRIPTS.cancel),
  inspect: SCRIPTS.inspect,
};
