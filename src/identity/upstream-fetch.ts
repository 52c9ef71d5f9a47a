// Every call Gatehouse makes to an upstream identity provider (token, keys, GitHub's API) is
// bounded: a deadline for the whole exchange, body included, and a size cap read as the bytes
// arrive, so a slow or hostile IdP cannot hold a login handler or fill memory.

/** A refusal by or about the IdP; the message is safe to show (no secrets, no internals). */
export class UpstreamError extends Error {}

export interface UpstreamLimits {
  /** Deadline for one request, headers and body. */
  timeoutMs: number;
  /** Largest response body accepted. */
  maxBodyBytes: number;
}

export const DEFAULT_UPSTREAM_LIMITS: UpstreamLimits = { timeoutMs: 10_000, maxBodyBytes: 1024 * 1024 };

/** Statuses whose responses have no body (Fetch §2.2.3 null body status). */
const NULL_BODY = new Set([101, 103, 204, 205, 304]);

/**
 * `fetch` with the limits applied, redirects refused (an IdP endpoint that redirects is
 * misconfigured, and following could leak the client secret to another host), and the body
 * fully read into memory before the caller sees the response.
 */
export async function boundedFetch(
  url: string | URL,
  init: RequestInit,
  limits: UpstreamLimits,
  what: string,
): Promise<Response> {
  const deadline = AbortSignal.timeout(limits.timeoutMs);
  const signal = init.signal ? AbortSignal.any([init.signal, deadline]) : deadline;
  try {
    const response = await fetch(url, { ...init, redirect: 'error', signal });
    const declared = Number(response.headers.get('content-length'));
    if (declared > limits.maxBodyBytes) {
      await response.body?.cancel();
      throw new UpstreamError(`${what} sent an answer that is too large`);
    }
    const chunks: Uint8Array[] = [];
    let size = 0;
    if (response.body) {
      for await (const chunk of response.body) {
        size += chunk.byteLength;
        if (size > limits.maxBodyBytes) throw new UpstreamError(`${what} sent an answer that is too large`);
        chunks.push(chunk);
      }
    }
    return new Response(NULL_BODY.has(response.status) ? null : Buffer.concat(chunks), {
      status: response.status,
      statusText: response.statusText,
      headers: response.headers,
    });
  } catch (error) {
    if (error instanceof UpstreamError) throw error;
    throw new UpstreamError(
      deadline.aborted ? `${what} did not answer in time` : `${what} could not be reached`,
    );
  }
}
