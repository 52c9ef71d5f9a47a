// The company wiki: pages with history (search, read, create, edit) as small HTML pages and a
// JSON API (the MCP server's tools use the API). It trusts only a verified
// Cf-Access-Jwt-Assertion and records every change under the email that assertion names.
import type http from 'node:http';
import { z } from 'zod';
import { createAccessVerifier } from '../shared/access.ts';
import { fetchVia } from '../shared/connect.ts';
import {
  escapeHtml,
  HttpError,
  parse,
  readForm,
  readJson,
  redirect,
  sameOrigin,
  sendHtml,
  sendJson,
} from '../shared/http.ts';
import { createOrigin, type Origin } from '../shared/origin.ts';
import { type Page, pageInput, SLUG, WikiStore } from './store.ts';

export interface WikiOptions {
  /** JSON file holding the pages (created on the first change). */
  dataFile: string;
  teamDomain: string;
  /** The wiki application's AUD tag in Gatehouse. */
  aud: string;
  /** Gatehouse's listen address, when the team domain's host does not resolve (`*.localhost`). */
  gatewayListen?: string;
}

const createInput = pageInput.extend({ slug: z.string().regex(SLUG) });

export function createWiki(options: WikiOptions): Origin & { store: WikiStore } {
  const store = new WikiStore(options.dataFile);
  const verify = createAccessVerifier({
    teamDomain: options.teamDomain,
    aud: options.aud,
    fetch: fetchVia(options.gatewayListen),
  });
  const origin = createOrigin('Wiki', verify, async (req, res, url, identity) => {
    const method = req.method ?? 'GET';
    const path = url.pathname;
    const pageMatch = /^\/(api\/)?pages\/([^/]+)(\/history|\/edit)?$/.exec(path);
    const slug = pageMatch ? decodeURIComponent(pageMatch[2]!) : null;

    // JSON API
    if (path === '/api/me' && method === 'GET') return sendJson(res, 200, { email: identity.email });
    if (path === '/api/pages' && method === 'GET') {
      return sendJson(res, 200, { pages: store.search(url.searchParams.get('q') ?? '').map(summary) });
    }
    if (path === '/api/pages' && method === 'POST') {
      const input = parse(createInput, await readJson(req));
      const { slug: newSlug, ...fields } = input;
      return sendJson(res, 201, store.create(newSlug, fields, identity.email));
    }
    if (pageMatch?.[1] && slug) {
      if (!pageMatch[3] && method === 'GET') return sendJson(res, 200, found(store.get(slug), slug));
      if (!pageMatch[3] && method === 'PUT') {
        return sendJson(res, 200, store.edit(slug, parse(pageInput, await readJson(req)), identity.email));
      }
      if (pageMatch[3] === '/history' && method === 'GET') {
        return sendJson(res, 200, { slug, revisions: found(store.history(slug), slug) });
      }
    }

    // Pages for people
    if (path === '/' && method === 'GET') return home(res, url.searchParams.get('q') ?? '', identity.email);
    if (path === '/new' && method === 'GET') return editForm(res, null, identity.email);
    if (path === '/pages' && method === 'POST') {
      const form = await postedForm(req);
      const page = store.create(
        form.get('slug') ?? '',
        parse(pageInput, { title: form.get('title') ?? '', body: form.get('body') ?? '' }),
        identity.email,
      );
      return redirect(res, `/pages/${page.slug}`);
    }
    if (pageMatch && !pageMatch[1] && slug) {
      if (!pageMatch[3] && method === 'GET')
        return pageView(res, found(store.get(slug), slug), identity.email);
      if (pageMatch[3] === '/edit' && method === 'GET') {
        return editForm(res, found(store.get(slug), slug), identity.email);
      }
      if (!pageMatch[3] && method === 'POST') {
        const form = await postedForm(req);
        const base = Number(form.get('base_revision'));
        store.edit(
          slug,
          parse(pageInput, {
            title: form.get('title') ?? '',
            body: form.get('body') ?? '',
            ...(Number.isInteger(base) && base > 0 && { base_revision: base }),
          }),
          identity.email,
        );
        return redirect(res, `/pages/${slug}`);
      }
    }
    throw new HttpError(404, 'not found');
  });

  function home(res: http.ServerResponse, query: string, email: string) {
    const pages = store.search(query);
    const rows = pages
      .map(
        (p) =>
          `<tr><td><a href="/pages/${p.slug}">${escapeHtml(p.title)}</a></td><td>${escapeHtml(p.updated_by)}</td><td>${p.updated_at}</td></tr>`,
      )
      .join('');
    sendHtml(
      res,
      200,
      'Wiki',
      `${header(email)}<h1>Company wiki</h1>
<form method="get" action="/"><input name="q" value="${escapeHtml(query)}" aria-label="search"> <button>Search</button></form>
<p><a href="/new">New page</a></p>
<table><tr><th>Page</th><th>Last edited by</th><th>At</th></tr>${rows}</table>`,
    );
  }

  function pageView(res: http.ServerResponse, page: Page, email: string) {
    const history = (store.history(page.slug) ?? [])
      .map(
        (r) =>
          `<tr><td>${r.revision}</td><td class="author">${escapeHtml(r.author)}</td><td>${r.at}</td></tr>`,
      )
      .join('');
    sendHtml(
      res,
      200,
      page.title,
      `${header(email)}<h1>${escapeHtml(page.title)}</h1><pre id="body">${escapeHtml(page.body)}</pre>
<p><a href="/pages/${page.slug}/edit">Edit</a></p>
<h2>History</h2><table id="history"><tr><th>Revision</th><th>Author</th><th>At</th></tr>${history}</table>`,
    );
  }

  function editForm(res: http.ServerResponse, page: Page | null, email: string) {
    sendHtml(
      res,
      200,
      page ? `Edit ${page.title}` : 'New page',
      `${header(email)}<h1>${page ? `Edit ${escapeHtml(page.title)}` : 'New page'}</h1>
<form method="post" action="${page ? `/pages/${page.slug}` : '/pages'}">
${page ? `<input type="hidden" name="base_revision" value="${page.revision}">` : '<p><label>Slug <input name="slug" required pattern="[a-z0-9][a-z0-9-]{0,63}"></label></p>'}
<p><label>Title <input name="title" required value="${escapeHtml(page?.title ?? '')}"></label></p>
<p><textarea name="body" aria-label="body">${escapeHtml(page?.body ?? '')}</textarea></p>
<button>Save</button></form>`,
    );
  }

  return Object.assign(origin, { store });
}

function header(email: string): string {
  return `<p><a href="/">Wiki home</a> · signed in as <strong id="me">${escapeHtml(email)}</strong></p>`;
}

function summary(page: Page) {
  const { body, ...rest } = page;
  return { ...rest, excerpt: body.slice(0, 200) };
}

function found<T>(value: T | null, slug: string): T {
  if (value === null) throw new HttpError(404, `no page "${slug}"`);
  return value;
}

async function postedForm(req: http.IncomingMessage): Promise<URLSearchParams> {
  if (!sameOrigin(req)) throw new HttpError(403, 'form posts must come from the wiki itself');
  return readForm(req);
}
