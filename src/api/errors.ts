// Errors of the management API, in Cloudflare's envelope (spec §1.1) with real HTTP statuses:
// the SDK ignores `success:false` on a 200, and it retries 409s, so validation problems are
// 400s with a code, never 409s (spec/stack.md §2). Codes and meanings: docs/api-errors.md.
import type { z } from 'zod';

/** Cloudflare-style numeric codes. Access codes follow spec §1.1; the rest are Cloudflare's v4 codes. */
export const ERROR_CODES = {
  /** 401: no token, unknown token, expired or disabled token. */
  authentication: 10000,
  /** 403: a valid token whose permission groups do not cover the endpoint. */
  forbidden: 10001,
  /** 400: a body or query that fails validation; also `access.api.error.invalid_request`. */
  invalidRequest: 12130,
  /** 404: `access.api.error.not_found`. */
  notFound: 12130,
  /** 404: the account in the path is not this installation's account. */
  unknownAccount: 7003,
  /** 404: no route for that method and path. */
  noRoute: 7000,
  /** 400: the body is not valid JSON, or is empty while a JSON content type is declared. */
  malformedJson: 6007,
  /** 413: the body is larger than the API accepts. */
  bodyTooLarge: 6013,
  /** 415: the body is not JSON. */
  unsupportedMediaType: 6010,
  /** 500: anything unexpected; details go to the log only. */
  internal: 10002,
  /** 503: the database cannot be reached; nothing was written, retry later (docs/deploy.md fail-static). */
  databaseUnavailable: 10503,
} as const;

/** An error the API reports to the client as is: status, Cloudflare-style code and message. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

/** 400 `access.api.error.invalid_request: <detail>`, Cloudflare's wording (spec §1.1). */
export function invalidRequest(detail: string): ApiError {
  return new ApiError(400, ERROR_CODES.invalidRequest, `access.api.error.invalid_request: ${detail}`);
}

/** 404 `access.api.error.not_found`, naming what was looked for. */
export function notFound(what: string, id: string): ApiError {
  return new ApiError(404, ERROR_CODES.notFound, `access.api.error.not_found: ${what} ${id} not found`);
}

/**
 * Parses `value` with `schema` or throws a 400 naming the first problem's field as a dotted path
 * under `prefix` (e.g. `policies.2.include.0`), or `body` for the object itself.
 */
export function parseInput<T extends z.ZodType>(schema: T, value: unknown, prefix = ''): z.output<T> {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  const path = [prefix, ...issue.path.map(String)].filter((part) => part !== '').join('.');
  if (issue.code === 'unrecognized_keys') {
    const names = issue.keys.map((key) => JSON.stringify(path ? `${path}.${key}` : key));
    throw invalidRequest(`unknown field ${names.join(', ')}`);
  }
  throw invalidRequest(`${path || 'body'}: ${issue.message}`);
}

export interface Envelope<T> {
  success: boolean;
  errors: { code: number; message: string }[];
  messages: unknown[];
  result: T | null;
  result_info?: ResultInfo;
}

export interface ResultInfo {
  page: number;
  per_page: number;
  count: number;
  total_count: number;
  total_pages: number;
}

export function errorEnvelope(code: number, message: string): Envelope<null> {
  return { success: false, errors: [{ code, message }], messages: [], result: null };
}

export function successEnvelope<T>(result: T, resultInfo?: ResultInfo): Envelope<T> {
  return {
    success: true,
    errors: [],
    messages: [],
    result,
    ...(resultInfo && { result_info: resultInfo }),
  };
}
