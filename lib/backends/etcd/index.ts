export { EtcdLockBackend } from './etcd.backend';
export type {
  EtcdClientLike,
  EtcdClientOptions,
  EtcdLockBackendClientOptions,
  EtcdLockBackendHostsOptions,
  EtcdLockBackendOptions,
  EtcdLockBackendTuning,
} from './etcd-backend.options';
