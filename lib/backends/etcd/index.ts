export { EtcdLockBackend } from './etcd.backend';
export { DEFAULT_ETCD_COMMAND_TIMEOUT, DEFAULT_ETCD_SESSION_TTL } from './etcd-backend.options';
export type {
  EtcdLockBackendClientOptions,
  EtcdLockBackendHostsOptions,
  EtcdLockBackendOptions,
  EtcdLockBackendTuning,
} from './etcd-backend.options';
