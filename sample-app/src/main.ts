import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { AppModule } from './app.module';

async function bootstrap(): Promise<void> {
  const app = await NestFactory.create(AppModule);
  // SIGTERM/SIGINT run the shutdown hooks, which release held locks before the process exits.
  app.enableShutdownHooks();
  const port = Number(process.env.PORT ?? 3000);
  const host = process.env.HOST ?? '127.0.0.1';
  await app.listen(port, host);
  Logger.log(
    `sample app on http://${host}:${port} (lock backend: ${process.env.LOCK_BACKEND ?? 'memory'})`,
    'Sample',
  );
}

void bootstrap();
