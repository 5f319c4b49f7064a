/**
 * `nestjs-distributed-lock/prometheus`: lock metrics through prom-client (an optional peer
 * dependency, needed only by this entry point).
 *
 * @module nestjs-distributed-lock/prometheus
 */
export { registerLockMetrics } from './observability/prometheus/lock.metrics';
export type { LockMetricsOptions } from './observability/prometheus/lock.metrics';
export type { LockMetricsAsyncOptions } from './observability/prometheus/lock-metrics.module';
export {
  DistributedLockPrometheusModule,
  LockMetricsRecorder,
} from './observability/prometheus/lock-metrics.module';
