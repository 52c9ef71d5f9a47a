// A Kysely query built and compiled once, run many times with new values. Kysely builds an
// operation tree and compiles it to SQL on every call (about 4 µs each, several per OIDC token
// request: bench/oidc); a hot statement whose shape never changes only needs its values bound.
// The query is compiled by the database's own dialect, so the SQL fits SQLite and PostgreSQL.
import type { Compilable, CompiledQuery, Kysely } from 'kysely';

const SLOT = '\u0000gatehouse-slot:';

export interface PreparedQuery<Slot extends string, Row> {
  /** Runs the statement with `values` bound to its slots; the rows it selected. */
  execute(values: Record<Slot, unknown>): Promise<Row[]>;
}

/**
 * `build` receives `slot(name)`, a placeholder to use wherever a value goes (where clauses,
 * inserted values, updates). Every compiled parameter is either a slot, bound per run, or a
 * constant of the built query.
 */
export function prepareQuery<Slot extends string, Row>(
  // biome-ignore lint/suspicious/noExplicitAny: any table set; the builder's types check the query.
  db: Kysely<any>,
  build: (slot: (name: Slot) => string) => Compilable<Row>,
): PreparedQuery<Slot, Row> {
  const compiled = build((name) => `${SLOT}${name}`).compile();
  const binders = compiled.parameters.map((parameter) =>
    typeof parameter === 'string' && parameter.startsWith(SLOT)
      ? (values: Record<Slot, unknown>) => values[parameter.slice(SLOT.length) as Slot]
      : () => parameter,
  );
  const bind = (values: Record<Slot, unknown>): CompiledQuery<Row> => ({
    ...compiled,
    parameters: binders.map((binder) => binder(values)),
  });
  return {
    async execute(values) {
      return (await db.executeQuery(bind(values))).rows;
    },
  };
}
