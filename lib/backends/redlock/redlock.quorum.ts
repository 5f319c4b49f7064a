/** What one master answered: its value, or the error its call failed with. */
export type MasterAnswer<T> =
  { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: unknown };

/**
 * The answers so far, one slot per master in the order of the masters (`undefined`: not yet
 * answered), and how many are still pending.
 */
export type Decide<T, R> = (
  answers: readonly (MasterAnswer<T> | undefined)[],
  pending: number,
) => R | undefined;

/**
 * Settles as soon as `decide` can answer from the masters that answered so far: a quorum needs
 * no more than a majority, so a minority of stopped masters costs no time. `decide` runs after
 * each answer; `undefined` means "wait for more", and once every master answered it must decide
 * (or throw, which rejects). Calls still pending keep running; their answers are ignored.
 */
export function firstDecision<T, R>(
  calls: readonly Promise<T>[],
  decide: Decide<T, R>,
): Promise<R> {
  return new Promise<R>((resolve, reject) => {
    const answers: (MasterAnswer<T> | undefined)[] = calls.map(() => undefined);
    let pending = calls.length;
    let settled = false;
    const record = (i: number, answer: MasterAnswer<T>): void => {
      answers[i] = answer;
      pending--;
      if (settled) return;
      try {
        const result = decide(answers, pending);
        if (result !== undefined) {
          settled = true;
          resolve(result);
        } else if (pending === 0) {
          settled = true;
          reject(new Error('redlock: no decision after every master answered'));
        }
      } catch (error) {
        settled = true;
        reject(error);
      }
    };
    calls.forEach((call, i) => {
      call.then(
        (value) => record(i, { ok: true, value }),
        (error: unknown) => record(i, { ok: false, error }),
      );
    });
  });
}

/** The values of the masters that answered, with their index. */
export function answered<T>(
  answers: readonly (MasterAnswer<T> | undefined)[],
): { readonly index: number; readonly value: T }[] {
  const out: { index: number; value: T }[] = [];
  answers.forEach((a, index) => {
    if (a?.ok) out.push({ index, value: a.value });
  });
  return out;
}

/** The errors of the masters that failed, with their index. */
export function failures<T>(
  answers: readonly (MasterAnswer<T> | undefined)[],
): { readonly index: number; readonly error: unknown }[] {
  const out: { index: number; error: unknown }[] = [];
  answers.forEach((a, index) => {
    if (a && !a.ok) out.push({ index, error: a.error });
  });
  return out;
}
