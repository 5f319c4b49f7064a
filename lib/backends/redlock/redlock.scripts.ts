import { lockHashKey } from '../redis/redis.keys';
import { RedisScript } from '../redis/redis.scripts';

/**
 * Lua scripts of the Redlock backend, run on each master independently (one call per master per
 * operation, every key of a lock in it: independent masters have no slot constraint).
 *
 * Keys for lock key K (final, already prefixed): `{K}`, a string holding the owner token with
 * the grant's ttl (Redlock's `SET NX PX`), and `{K}:w`, a hash of the waiters to wake when K is
 * freed on this master (token → wake channel), kept only while someone waits (it expires with
 * the longest wait). No queue: masters would order waiters differently, so a FIFO across them
 * cannot be had (see redlock.backend.ts). The braces keep the layout injective, as on Redis.
 */

/** KEYS of a script that works on whole locks: (lock, waiters) per key, then `args` as ARGV. */
export function redlockArgv(
  keys: readonly string[],
  ...args: readonly (string | number)[]
): (string | number)[] {
  const out: (string | number)[] = [];
  for (const key of keys) {
    const lock = lockHashKey(key);
    out.push(lock, `${lock}:w`);
  }
  for (const arg of args) out.push(arg);
  return out;
}

/**
 * Wakes the waiters of one key (except `token`) with the Redis backend's message format,
 * "<attempt>|<claim ms>|<fencing>|<token>", attempt 0 meaning "no handoff, try again now".
 */
const WAKE_WAITERS = `
local function wakeWaiters(waiters, token)
  local all = redis.call('HGETALL', waiters)
  for j = 1, #all, 2 do
    if all[j] ~= token then redis.call('PUBLISH', all[j + 1], '0|0|0|' .. all[j]) end
  end
end
`;

/**
 * KEYS: (lock, waiters) per key. ARGV: token, ttl, queueFor, wake channel. Grants every key when
 * none is held by another owner (keys already ours are set again: a retry never blocks on its
 * own partial grant). SET comes first, so a master refusing writes (OOM) changes nothing.
 * Returns 1 when granted; else {0, longest pttl of a blocking key, its owner, waiters on the
 * keys}, having recorded the token as a waiter when `queueFor` > 0.
 */
export const REDLOCK_ACQUIRE_LUA = `
local token, ttl, queueFor, channel = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local busy, busyTtl, owner = false, 0, ''
for i = 1, #KEYS, 2 do
  local current = redis.call('GET', KEYS[i])
  if current and current ~= token then
    local pttl = redis.call('PTTL', KEYS[i])
    if not busy or pttl > busyTtl then busyTtl, owner = pttl, current end
    busy = true
  end
end
if not busy then
  for i = 1, #KEYS, 2 do
    redis.call('SET', KEYS[i], token, 'PX', ttl)
    if queueFor > 0 then redis.call('HDEL', KEYS[i + 1], token) end
  end
  return 1
end
local waiting = 0
if queueFor > 0 then
  for i = 1, #KEYS, 2 do
    local current = redis.call('GET', KEYS[i])
    if current and current ~= token then
      redis.call('HSET', KEYS[i + 1], token, channel)
      if redis.call('PTTL', KEYS[i + 1]) < queueFor then redis.call('PEXPIRE', KEYS[i + 1], queueFor) end
      waiting = math.max(waiting, redis.call('HLEN', KEYS[i + 1]))
    end
  end
end
return {0, busyTtl, owner, waiting}
`;

/**
 * KEYS: (lock, waiters) per key. ARGV: token. Deletes every key the token owns and wakes that
 * key's waiters. Returns 1 when the token owned every key on this master.
 */
export const REDLOCK_RELEASE_LUA = `
local token = ARGV[1]
${WAKE_WAITERS}
local released = 1
for i = 1, #KEYS, 2 do
  if redis.call('GET', KEYS[i]) == token then
    redis.call('DEL', KEYS[i])
    wakeWaiters(KEYS[i + 1], token)
  else
    released = 0
  end
end
return released
`;

/**
 * KEYS: (lock, waiters) per key. ARGV: token. Removes the token's waiter entries and deletes (and
 * wakes the waiters of) every key it owns. Idempotent.
 */
export const REDLOCK_CANCEL_LUA = `
local token = ARGV[1]
${WAKE_WAITERS}
for i = 1, #KEYS, 2 do
  redis.call('HDEL', KEYS[i + 1], token)
  if redis.call('GET', KEYS[i]) == token then
    redis.call('DEL', KEYS[i])
    wakeWaiters(KEYS[i + 1], token)
  end
end
return 1
`;

/**
 * KEYS: every lock key of the batch, request after request. ARGV: (key count, token, ttl) per
 * request. Extends a request only if the token owns all its keys on this master. Returns 1/0 per
 * request.
 */
export const REDLOCK_EXTEND_LUA = `
local results = {}
local k = 0
for a = 1, #ARGV, 3 do
  local n, token, ttl = tonumber(ARGV[a]), ARGV[a + 1], ARGV[a + 2]
  local held = 1
  for j = k + 1, k + n do
    if redis.call('GET', KEYS[j]) ~= token then
      held = 0
      break
    end
  end
  if held == 1 then
    for j = k + 1, k + n do redis.call('PEXPIRE', KEYS[j], ttl) end
  end
  results[#results + 1] = held
  k = k + n
end
return results
`;

/** KEYS: one lock key. Returns {} when free, else {owner, pttl}. */
export const REDLOCK_INSPECT_LUA = `
local owner = redis.call('GET', KEYS[1])
if not owner then return {} end
return {owner, redis.call('PTTL', KEYS[1])}
`;

/** The backend's scripts. */
export const REDLOCK_SCRIPTS = {
  acquire: new RedisScript('acquire', REDLOCK_ACQUIRE_LUA),
  release: new RedisScript('release', REDLOCK_RELEASE_LUA),
  cancel: new RedisScript('cancel', REDLOCK_CANCEL_LUA),
  extend: new RedisScript('extend', REDLOCK_EXTEND_LUA),
  inspect: new RedisScript('inspect', REDLOCK_INSPECT_LUA),
} as const;
