// The wiki's pages and their full history, in one JSON file of its own. Every change is a new
// revision naming the person Gatehouse vouched for; nothing is ever overwritten in place.
import { existsSync, readFileSync } from 'node:fs';
import { z } from 'zod';
import { writeFileAtomic } from '../shared/files.ts';
import { HttpError } from '../shared/http.ts';

export const SLUG = /^[a-z0-9][a-z0-9-]{0,63}$/;
export const MAX_TITLE = 200;
export const MAX_BODY = 100_000;

const revisionSchema = z.object({
  revision: z.number().int().min(1),
  title: z.string(),
  body: z.string(),
  author: z.string(),
  at: z.string(),
});
const pageSchema = z.object({ slug: z.string(), revisions: z.array(revisionSchema).min(1) });
const fileSchema = z.object({ pages: z.array(pageSchema) });

export type Revision = z.infer<typeof revisionSchema>;
export interface Page {
  slug: string;
  title: string;
  body: string;
  revision: number;
  updated_by: string;
  updated_at: string;
  created_by: string;
}

export const pageInput = z.strictObject({
  title: z.string().trim().min(1).max(MAX_TITLE),
  body: z.string().max(MAX_BODY),
  /** Optimistic concurrency: the revision the editor started from. */
  base_revision: z.number().int().min(1).optional(),
});

export class WikiStore {
  private pages = new Map<string, Revision[]>();

  constructor(
    private readonly file: string,
    private readonly now: () => Date = () => new Date(),
  ) {
    if (existsSync(file)) {
      const data = fileSchema.parse(JSON.parse(readFileSync(file, 'utf8')));
      for (const page of data.pages) this.pages.set(page.slug, page.revisions);
    }
  }

  search(query: string, limit = 50): Page[] {
    const terms = query.toLowerCase().split(/\s+/).filter(Boolean);
    const found: Page[] = [];
    for (const [slug, revisions] of this.pages) {
      const page = view(slug, revisions);
      const text = `${page.slug} ${page.title} ${page.body}`.toLowerCase();
      if (terms.every((term) => text.includes(term))) found.push(page);
    }
    return found.sort((a, b) => b.updated_at.localeCompare(a.updated_at)).slice(0, limit);
  }

  get(slug: string): Page | null {
    const revisions = this.pages.get(slug);
    return revisions ? view(slug, revisions) : null;
  }

  history(slug: string): Revision[] | null {
    const revisions = this.pages.get(slug);
    return revisions ? [...revisions].reverse() : null;
  }

  create(slug: string, input: z.infer<typeof pageInput>, author: string): Page {
    if (!SLUG.test(slug)) {
      throw new HttpError(
        400,
        'slug: 1-64 lower-case letters, digits and dashes, starting with a letter or digit',
      );
    }
    if (this.pages.has(slug)) throw new HttpError(409, `page "${slug}" already exists; edit it instead`);
    return this.append(slug, [], input, author);
  }

  edit(slug: string, input: z.infer<typeof pageInput>, author: string): Page {
    const revisions = this.pages.get(slug);
    if (!revisions) throw new HttpError(404, `no page "${slug}"`);
    const latest = revisions.at(-1)!;
    if (input.base_revision !== undefined && input.base_revision !== latest.revision) {
      throw new HttpError(
        409,
        `page "${slug}" changed since revision ${input.base_revision} (now ${latest.revision} by ${latest.author})`,
      );
    }
    return this.append(slug, revisions, input, author);
  }

  private append(
    slug: string,
    revisions: Revision[],
    input: z.infer<typeof pageInput>,
    author: string,
  ): Page {
    const next = [
      ...revisions,
      {
        revision: revisions.length + 1,
        title: input.title,
        body: input.body,
        author,
        at: this.now().toISOString(),
      },
    ];
    // Written before the in-memory map changes: a failed write leaves both as they were.
    const pages = [...this.pages].map(([s, r]) => ({ slug: s, revisions: s === slug ? next : r }));
    if (!this.pages.has(slug)) pages.push({ slug, revisions: next });
    writeFileAtomic(this.file, JSON.stringify({ pages }));
    this.pages.set(slug, next);
    return view(slug, next);
  }
}

function view(slug: string, revisions: Revision[]): Page {
  const latest = revisions.at(-1)!;
  return {
    slug,
    title: latest.title,
    body: latest.body,
    revision: latest.revision,
    updated_by: latest.author,
    updated_at: latest.at,
    created_by: revisions[0]!.author,
  };
}
