/**
 * `nestjs-distributed-lock/backend`: the contract for writing your own storage backend. Implement
 * {@link LockBackend} and pass an instance as the module's `backend` option.
 *
 * A separate entry point so that application code, which only takes locks, sees a small API from
 * `nestjs-distributed-lock`; the request and response shapes below change only with the contract.
 *
 * @module nestjs-distributed-lock/backend
 */
export type {
  BackendAcquireRequest,
  BackendAcquireResult,
  BackendExtendRequest,
  BackendHandoff,
  BackendLockInfo,
  BackendLockRef,
  BackendLossEvent,
  LockBackend,
  Unsubscribe,
  WakeListener,
} from './backends/lock-backend.interface';
// Every backend method rejects with it on a failure (see LockBackend), so it belongs to the contract.
export { LockBackendError } from './errors/lock-backend.error';
