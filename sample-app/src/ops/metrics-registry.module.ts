import { Module } from '@nestjs/common';
import { Registry } from 'prom-client';

/**
 * One prom-client registry per application (not the global one), so two instances of the app in
 * one process, as in the tests, keep separate figures.
 */
@Module({
  providers: [{ provide: Registry, useFactory: () => new Registry() }],
  exports: [Registry],
})
export class MetricsRegistryModule {}
