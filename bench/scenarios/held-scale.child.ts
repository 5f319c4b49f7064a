/**
 * The held-lock scale scenario runs in a fresh process (started by the orchestrator with
 * child_process.fork) so its RSS, heap and event-loop lag belong to this scenario alone.
 */
import { serveParent } from '../support/child.pool';
import { HeldScaleTask, runHeldScale } from './held-scale.scenario';

serveParent({
  run: (payload) => runHeldScale(payload as HeldScaleTask),
});
