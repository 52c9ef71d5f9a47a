// Cloudflare's page/per_page pagination (spec §1.1). The official SDK's iterator asks for the
// next page while the last one was non-empty and ignores the totals (spec/stack.md §2), so a
// page past the end must come back with an empty `result`, which an OFFSET query gives.
import { z } from 'zod';
import type { ResultInfo } from './errors.ts';

/** Highest per_page accepted: a bound on one response's size and on one query's work. */
export const MAX_PER_PAGE = 1000;
/** Highest page accepted, so offsets stay small integers. */
const MAX_PAGE = 1_000_000;

/** Query fields `page` and `per_page`, with the list's own default page size. */
export function pageQueryShape(defaultPerPage: number) {
  return {
    page: z.coerce.number().int().min(1).max(MAX_PAGE).default(1),
    per_page: z.coerce.number().int().min(1).max(MAX_PER_PAGE).default(defaultPerPage),
  };
}

export interface PageRequest {
  page: number;
  per_page: number;
}

/** The window of rows a page covers. */
export function pageWindow(request: PageRequest): { offset: number; limit: number } {
  return { offset: (request.page - 1) * request.per_page, limit: request.per_page };
}

/** `result_info` for a page holding `count` of `totalCount` items. */
export function resultInfo(request: PageRequest, count: number, totalCount: number): ResultInfo {
  return {
    page: request.page,
    per_page: request.per_page,
    count,
    total_count: totalCount,
    total_pages: Math.ceil(totalCount / request.per_page),
  };
}

/** One page of a short list already in memory, with its `result_info`. */
export function pageOf<T>(request: PageRequest, all: readonly T[]): { result: T[]; resultInfo: ResultInfo } {
  const { offset, limit } = pageWindow(request);
  const result = all.slice(offset, offset + limit);
  return { result, resultInfo: resultInfo(request, result.length, all.length) };
}
