import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';

/**
 * Lua scripts of the Redis backend and the runner that calls them by SHA.
 *
 * Every script receives, for each lock key, the triplet (lock, queue, waiters) of redis.keys.ts
 * as KEYS, so the same code runs on Redis Cluster when the keys share a slot.
 *
 * Fencing tokens: a grant of a free key takes the server TIME in µs; a grant that follows a
 * holder in the same script (release handoff) takes max(last token + 1, TIME). Tokens therefore
 * grow with every grant of a key and keep growing after the lock hash expired, without keeping
 * any Redis key per lock key once it is free. Trade-off: this relies on the Redis server clock
 * not going backwards (a clock step back, or a failover to a replica whose clock lags, could
 * hand out a smaller token than the last one). µs since 1970 stay below 2^53 until about 2255.
 *
 * Atomicity under OOM / READONLY: Redis checks a legacy (no shebang) script only at its first
 * write command and lets the rest run once it has written, so every script below either writes
 * nothing or runs whole. Under maxmemory that first write decides: a new grant starts with HSET
 * (refused, so acquire fails with OOM), while release, cancel and extend start with DEL, ZREM or
 * PEXPIRE and keep working, which frees memory. A shebang (checked upfront) would fail on Redis 6.
 */

/** Shared helpers, prepended to the scripts that need server time and the queue. */
const PRELUDE = `
local function fmt(n) return string.format('%.0f', n) end
local time = redis.call('TIME')
local nowUs = tonumber(time[1]) * 1000000 + tonumber(time[2])
local nowMs = math.floor(nowUs / 1000)

local function parseWaiter(raw)
  if not raw then return nil end
  local deadline, ttl, channel = string.match(raw, '^(%d+)|(%d+)|(.*)$')
  if not deadline then return nil end
  return tonumber(deadline), tonumber(ttl), channel
end

local function dropWaiter(queue, waiters, token)
  redis.call('ZREM', queue, token)
  redis.call('HDEL', waiters, token)
  if redis.call('ZCARD', queue) == 0 then redis.call('DEL', queue, waiters) end
end

-- The oldest waiter whose deadline has not passed, purging dead ones ahead of it. Each dead
-- entry is removed once, so the loop is amortised O(1) per entry ever queued.
local function liveHead(queue, waiters)
  while true do
    local head = redis.call('ZRANGE', queue, 0, 0)[1]
    if not head then return nil end
    local deadline, ttl, channel = parseWaiter(redis.call('HGET', waiters, head))
    if deadline and deadline > nowMs then return head, ttl, channel end
    dropWaiter(queue, waiters, head)
  end
end

-- Reserves a free lock for its oldest live waiter for the claim window and wakes it. The waiter
-- leaves the queue: if it died, the reservation simply expires and the next one gets its turn.
local function handOff(lock, queue, waiters, lastFencing, claimWindow)
  local head, ttl, channel = liveHead(queue, waiters)
  if not head then return nil end
  local claim = math.max(1, math.min(claimWindow, ttl))
  local fencing = math.max(lastFencing + 1, nowUs)
  redis.call('DEL', lock)
  redis.call('HSET', lock, 'o', head, 'f', fmt(fencing), 'c', '1')
  redis.call('PEXPIRE', lock, claim)
  dropWaiter(queue, waiters, head)
  redis.call('PUBLISH', channel, head)
  return claim
end
`;

/**
 * KEYS: (lock, queue, waiters) per lock key. ARGV: token, ttl, queueFor, wake channel, claimWindow.
 * Returns {1, fencing...} when granted, {0, retryAfter} when busy.
 *
 * A multi-key waiter is handed each key separately (FIFO per key) and keeps the keys reserved
 * for it while it waits for the others, re-reserving them on every attempt (so it retries
 * within half the claim window). Queue scores are one global order (server time, and a
 * refresh reuses the waiter's oldest score on any of its keys), so the oldest waiter is first in
 * every queue it is in and two multi-key waiters cannot wait on each other forever.
 */
export const ACQUIRE_LUA = `${PRELUDE}
local token = ARGV[1]
local ttl = tonumber(ARGV[2])
local queueFor = tonumber(ARGV[3])
local channel = ARGV[4]
local claimWindow = tonumber(ARGV[5])
local count = #KEYS / 3

local state = {}
local grantable = true
for i = 1, count do
  local lock, queue, waiters = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  local owner = redis.call('HGET', lock, 'o')
  if owner == token then
    state[i] = 'mine'
  elseif owner then
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
  local result = {1}
  for i = 1, count do
    local lock, queue, waiters = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
    local fencing = nil
    if state[i] == 'mine' then
      fencing = tonumber(redis.call('HGET', lock, 'f'))
      redis.call('HDEL', lock, 'c')
    end
    if not fencing then
      -- HSET first: on a full Redis (maxmemory) a new grant is refused before anything changed.
      fencing = nowUs
      redis.call('HSET', lock, 'o', token, 'f', fmt(fencing))
    end
    redis.call('PEXPIRE', lock, ttl)
    if redis.call('ZSCORE', queue, token) then dropWaiter(queue, waiters, token) end
    result[i + 1] = fencing
  end
  return result
end

local retry = 1
local hold = nil
for i = 1, count do
  local lock, queue, waiters = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  if state[i] == 'busy' then
    local pttl = redis.call('PTTL', lock)
    if pttl < 0 then pttl = claimWindow end
    retry = math.max(retry, pttl)
  elseif state[i] == 'behind' then
    retry = math.max(retry, handOff(lock, queue, waiters, 0, claimWindow) or 1)
  elseif state[i] == 'mine' and redis.call('HEXISTS', lock, 'c') == 1 then
    local keep = math.max(1, math.min(claimWindow, ttl))
    redis.call('PEXPIRE', lock, keep)
    if not hold or keep < hold then hold = keep end
  end
end
if hold then retry = math.max(1, math.min(retry, math.floor(hold / 2))) end

if queueFor > 0 then
  local score = nil
  local tail = 0
  for i = 1, count do
    if state[i] ~= 'mine' then
      local queue = KEYS[3 * i - 1]
      local own = redis.call('ZSCORE', queue, token)
      if own then
        own = tonumber(own)
        if not score or own < score then score = own end
      end
      local last = redis.call('ZRANGE', queue, -1, -1, 'WITHSCORES')[2]
      if last then tail = math.max(tail, tonumber(last)) end
    end
  end
  -- A newcomer goes strictly behind every current tail, even within one microsecond.
  score = fmt(score or math.max(nowUs, tail + 1))
  local entry = fmt(nowMs + queueFor) .. '|' .. fmt(ttl) .. '|' .. channel
  for i = 1, count do
    if state[i] ~= 'mine' then
      local queue, waiters = KEYS[3 * i - 1], KEYS[3 * i]
      redis.call('ZADD', queue, score, token)
      redis.call('HSET', waiters, token, entry)
      if redis.call('PTTL', queue) < queueFor then
        redis.call('PEXPIRE', queue, queueFor)
        redis.call('PEXPIRE', waiters, queueFor)
      end
    end
  end
end
return {0, retry}
`;

/**
 * KEYS: (lock, queue, waiters) per lock key. ARGV: token, claimWindow. Deletes every key still
 * owned by the token and hands it to its next live waiter. Returns 1 when all keys were owned.
 */
export const RELEASE_LUA = `${PRELUDE}
local token = ARGV[1]
local claimWindow = tonumber(ARGV[2])
local released = 1
for i = 1, #KEYS / 3 do
  local lock, queue, waiters = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  local found = redis.call('HMGET', lock, 'o', 'f')
  if found[1] == token then
    redis.call('DEL', lock)
    handOff(lock, queue, waiters, tonumber(found[2]) or 0, claimWindow)
  else
    released = 0
  end
end
return released
`;

/**
 * KEYS: every lock HASH of the batch, request after request. ARGV: (key count, token, ttl) per
 * request. Extends a request only if all its keys are owned by its token. Returns 1/0 per request.
 */
export const EXTEND_LUA = `
local results = {}
local k = 0
for a = 1, #ARGV, 3 do
  local n = tonumber(ARGV[a])
  local token = ARGV[a + 1]
  local ttl = ARGV[a + 2]
  local held = 1
  for j = k + 1, k + n do
    if redis.call('HGET', KEYS[j], 'o') ~= token then held = 0 end
  end
  if held == 1 then
    for j = k + 1, k + n do redis.call('PEXPIRE', KEYS[j], ttl) end
  end
  results[#results + 1] = held
  k = k + n
end
return results
`;

/**
 * KEYS: (lock, queue, waiters) per lock key. ARGV: token, claimWindow. Removes the token's queue
 * entries and releases any unclaimed handoff to it; a key left free with live waiters is handed
 * on, since the entry removed may have been the one everybody else was queued behind.
 */
export const CANCEL_LUA = `${PRELUDE}
local token = ARGV[1]
local claimWindow = tonumber(ARGV[2])
for i = 1, #KEYS / 3 do
  local lock, queue, waiters = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  if redis.call('ZSCORE', queue, token) then dropWaiter(queue, waiters, token) end
  local found = redis.call('HMGET', lock, 'o', 'f', 'c')
  if found[1] == token and found[3] then
    redis.call('DEL', lock)
    handOff(lock, queue, waiters, tonumber(found[2]) or 0, claimWindow)
  elseif not found[1] then
    handOff(lock, queue, waiters, 0, claimWindow)
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

/** The commands a script runner needs from an ioredis client. */
export type ScriptClient = Pick<Redis, 'evalsha' | 'eval'>;

function isNoScript(error: unknown): boolean {
  return error instanceof Error && error.message.startsWith('NOSCRIPT');
}

/**
 * Runs `script` with EVALSHA, falling back to EVAL (which also caches it on the server) when the
 * server does not know the SHA: after a restart, a failover or SCRIPT FLUSH.
 *
 * @throws whatever the client throws for any other error (timeouts are the caller's job)
 */
export async function runScript(
  client: ScriptClient,
  script: RedisScript,
  keys: readonly string[],
  args: readonly (string | number)[],
): Promise<unknown> {
  try {
    return await client.evalsha(script.sha, keys.length, ...keys, ...args);
  } catch (error) {
    if (!isNoScript(error)) throw error;
    return client.eval(script.source, keys.length, ...keys, ...args);
  }
}

/** The backend's scripts. */
export const SCRIPTS = {
  acquire: new RedisScript('acquire', ACQUIRE_LUA),
  release: new RedisScript('release', RELEASE_LUA),
  extend: new RedisScript('extend', EXTEND_LUA),
  cancel: new RedisScript('cancel', CANCEL_LUA),
  inspect: new RedisScript('inspect', INSPECT_LUA),
} as const;
