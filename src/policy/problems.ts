// How the engine reports what is wrong with a configuration: a list of problems, each with a
// JSON-pointer-like path into the checked object, so the management API can return all of them at
// once and the admin can find each one.

export interface PolicyProblem {
  /** e.g. `/include/0/linked_app_token` or `/policies/2/require/1`; "" is the checked object itself. */
  readonly path: string;
  readonly message: string;
}

/** Thrown by compilePolicies when the configuration cannot be evaluated safely. */
export class PolicyCompileError extends Error {
  override readonly name = 'PolicyCompileError';

  constructor(readonly problems: readonly PolicyProblem[]) {
    super(
      `policies do not compile: ${problems
        .slice(0, 5)
        .map((problem) => `${problem.path || '/'}: ${problem.message}`)
        .join('; ')}${problems.length > 5 ? ` (and ${problems.length - 5} more)` : ''}`,
    );
  }
}
