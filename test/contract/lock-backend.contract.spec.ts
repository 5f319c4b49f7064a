import { describeLockBackend } from '../support/lock-backend.contract';
import { CONTRACT_BACKENDS } from '../support/test-backends';

// One contract for every backend; a new backend is one entry in CONTRACT_BACKENDS.
for (const backend of CONTRACT_BACKENDS) describeLockBackend(backend.name, backend);
