export { EtcdLockBackend } from './etcd.backend';
export type {
  EtcdLockBackendClientOptions,
  EtcdLockBackendHostsOptions,
  EtcdLockBackendOptions,
  EtcdLockBackendTuning,
} from './etcd-backend.options';
