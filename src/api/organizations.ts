// /accounts/{account_id}/access/organizations (spec §1.3): the one organisation of the
// installation, stored on the account row. PUT replaces every mutable field (omitted ones return
// to their defaults, spec §1.1); PATCH changes only the fields sent, as Cloudflare's docs use it
// [D: service-tokens.mdx]. `revoke_user` ends a user's sessions and tokens everywhere.
// Settings that promise security Gatehouse does not enforce (MFA, WARP, device posture) are
// refused rather than stored.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { endUserSessions } from '../identity/state.ts';
import { parseGoDuration } from '../policy/index.ts';
import { MAX_EMAIL_LENGTH, MAX_NAME_LENGTH } from '../policy/limits.ts';
import type { Account, AccountUpdate } from '../store/repositories/accounts.ts';
import { nowIso } from '../store/store.ts';
import { goDuration, httpUrl } from './apps-schema.ts';
import { invalidRequest, parseInput } from './errors.ts';
import { asksForMfa, type FieldScreen, isSet, isTrue, screenFields } from './fields.ts';
import { type ApiContext, defineRoute } from './framework.ts';
import type { RouteSchemas } from './openapi.ts';

/** The global session: Cloudflare offers 15 minutes to one month (730h). */
const MIN_SESSION_MS = 15 * 60_000;
const MAX_SESSION_MS = 730 * 3_600_000;

const color = z.string().regex(/^#[0-9a-fA-F]{3,8}$/, 'expected a hex colour such as #0055ff');
const caption = z.string().max(1024);

const fields = {
  name: z.string().trim().min(1).max(MAX_NAME_LENGTH),
  auth_domain: z
    .string()
    .min(1)
    .max(253 + 16),
  session_duration: goDuration(MAX_SESSION_MS, '730h').refine(
    (value) => (parseGoDuration(value) ?? 0) >= MIN_SESSION_MS,
    'must be at least 15m',
  ),
  deny_unmatched_requests: z.boolean(),
  auto_redirect_to_identity: z.boolean(),
  is_ui_read_only: z.boolean(),
  ui_read_only_toggle_reason: z.string().max(1024).nullable(),
  user_seat_expiration_inactive_time: goDuration(8760 * 3_600_000, '8760h').nullable(),
  strict_service_token_auth: z.boolean(),
  login_design: z.strictObject({
    background_color: color.optional(),
    text_color: color.optional(),
    logo_path: httpUrl.optional(),
    header_text: caption.optional(),
    footer_text: caption.optional(),
  }),
  custom_pages: z.strictObject({
    forbidden: z.guid().optional(),
    identity_denied: z.guid().optional(),
  }),
};

const patchBody = z.strictObject({
  name: fields.name.optional(),
  auth_domain: fields.auth_domain.optional(),
  session_duration: fields.session_duration.optional(),
  deny_unmatched_requests: fields.deny_unmatched_requests.optional(),
  auto_redirect_to_identity: fields.auto_redirect_to_identity.optional(),
  is_ui_read_only: fields.is_ui_read_only.optional(),
  ui_read_only_toggle_reason: fields.ui_read_only_toggle_reason.optional(),
  user_seat_expiration_inactive_time: fields.user_seat_expiration_inactive_time.optional(),
  strict_service_token_auth: fields.strict_service_token_auth.optional(),
  login_design: fields.login_design.optional(),
  custom_pages: fields.custom_pages.optional(),
});
type OrgPatch = z.output<typeof patchBody>;

/** PUT: `name` and `auth_domain` are required, as on Cloudflare's create; the rest defaults. */
const putBody = patchBody.extend({ name: fields.name, auth_domain: fields.auth_domain });

/** What a PUT sets for the fields it omits. Unmatched hosts are denied unless asked otherwise (ARCHITECTURE.md §2). */
const PUT_DEFAULTS: Required<Omit<OrgPatch, 'name' | 'auth_domain'>> = {
  session_duration: '24h',
  deny_unmatched_requests: true,
  auto_redirect_to_identity: false,
  is_ui_read_only: false,
  ui_read_only_toggle_reason: null,
  user_seat_expiration_inactive_time: null,
  strict_service_token_auth: false,
  login_design: {},
  custom_pages: {},
};

const SCREEN: FieldScreen = {
  accepted: Object.keys(patchBody.shape),
  readOnly: ['created_at', 'updated_at'],
  unenforced: {
    allow_authenticate_via_warp: { promises: isTrue, why: 'Gatehouse has no WARP client sessions' },
    warp_auth_session_duration: { promises: isSet, why: 'Gatehouse has no WARP client sessions' },
    warp_auth_non_browser_401: { promises: isTrue, why: 'Gatehouse has no WARP client sessions' },
    mfa_config: { promises: asksForMfa, why: 'Gatehouse does not run multi-factor authentication itself' },
    mfa_required_for_all_apps: {
      promises: isTrue,
      why: 'Gatehouse does not run multi-factor authentication itself',
    },
    mfa_piv_key_requirements: { promises: isSet, why: 'Gatehouse does not check PIV keys' },
    deny_unmatched_requests_exempted_zone_names: {
      promises: isSet,
      why: 'Gatehouse has no zones; unmatched hosts are all treated alike',
    },
    service_token_inactivity: {
      promises: (value) => isSet(value) && (value as { enabled?: unknown }).enabled !== false,
      why: 'inactive service tokens are not disabled automatically; set an expiry with duration instead',
    },
  },
};

const revokeBody = z.strictObject({
  email: z.email().max(MAX_EMAIL_LENGTH),
  user_uid: z.guid().optional(),
  // Gatehouse has no device or WARP sessions, so revoking them too is already done.
  devices: z.boolean().optional(),
  warp_session_reauth: z.boolean().optional(),
});
const revokeQuery = z.strictObject({
  devices: z.enum(['true', 'false']).optional(),
});

export const organizationSchemas = {
  'organizations.update': { body: putBody },
  'organizations.patch': { body: patchBody },
  'organizations.revoke_user': { query: revokeQuery, body: revokeBody },
} satisfies RouteSchemas;

export function registerOrganizationRoutes(app: FastifyInstance, ctx: ApiContext): void {
  const { repos, settings } = ctx.gateway;
  // Cloudflare's auth_domain is a host (`<team>.cloudflareaccess.com`); the team domain is set
  // by configuration (--team-domain), because it is the issuer of every token.
  const teamHost = new URL(settings.teamDomain).host;

  const orgJson = (account: Account) => ({
    name: account.name,
    auth_domain: teamHost,
    session_duration: account.sessionDuration,
    deny_unmatched_requests: account.denyUnmatchedRequests,
    login_design: account.loginDesign,
    ...(account.uiReadOnlyToggleReason !== null && {
      ui_read_only_toggle_reason: account.uiReadOnlyToggleReason,
    }),
    allow_authenticate_via_warp: false,
    auto_redirect_to_identity: account.autoRedirectToIdentity,
    is_ui_read_only: account.isUiReadOnly,
    ...(account.userSeatExpirationInactiveTime !== null && {
      user_seat_expiration_inactive_time: account.userSeatExpirationInactiveTime,
    }),
    strict_service_token_auth: account.strictServiceTokenAuth,
    custom_pages: account.customPages,
    created_at: account.createdAt,
    updated_at: account.updatedAt,
  });

  const write = async (request: FastifyRequest, patch: OrgPatch) => {
    if (
      patch.auth_domain !== undefined &&
      patch.auth_domain !== teamHost &&
      patch.auth_domain !== settings.teamDomain
    ) {
      throw invalidRequest(
        `auth_domain: is ${teamHost}, the team domain; change it with --team-domain (GATEHOUSE_TEAM_DOMAIN), not through the API`,
      );
    }
    const update: AccountUpdate = {
      name: patch.name,
      sessionDuration: patch.session_duration,
      denyUnmatchedRequests: patch.deny_unmatched_requests,
      autoRedirectToIdentity: patch.auto_redirect_to_identity,
      isUiReadOnly: patch.is_ui_read_only,
      uiReadOnlyToggleReason: patch.ui_read_only_toggle_reason,
      userSeatExpirationInactiveTime: patch.user_seat_expiration_inactive_time,
      strictServiceTokenAuth: patch.strict_service_token_auth,
      loginDesign: patch.login_design,
      customPages: patch.custom_pages,
    };
    const result = await ctx.write(request, 'organization', async (tx, changed) => {
      await repos.accounts.updateIn(tx, ctx.accountId, update);
      changed({ table: 'accounts', accountId: ctx.accountId, id: ctx.accountId });
      return { resourceId: ctx.accountId, value: orgJson((await repos.accounts.get(tx))!) };
    });
    return { result };
  };

  defineRoute(app, 'organizations.get', async () => ({ result: orgJson((await repos.accounts.get())!) }));

  defineRoute(app, 'organizations.update', async (request) => {
    const body = parseInput(putBody, screenFields(request.body, SCREEN));
    return write(request, { ...PUT_DEFAULTS, ...body });
  });

  defineRoute(app, 'organizations.patch', async (request) => {
    const body = parseInput(patchBody, screenFields(request.body, SCREEN));
    // Nothing to change: answer without a write (and without an audit row).
    if (Object.keys(body).length === 0) return { result: orgJson((await repos.accounts.get())!) };
    return write(request, body);
  });

  // Result is a bare boolean [TS: OrganizationRevokeUsersResponse]: true when the user's
  // sessions and tokens were revoked, false when no user with that email ever logged in.
  defineRoute(app, 'organizations.revoke_user', async (request) => {
    parseInput(revokeQuery, request.query, 'query');
    const body = parseInput(revokeBody, request.body);
    const user = await repos.users.findByEmail(ctx.accountId, body.email);
    if (!user) return { result: false };
    if (body.user_uid !== undefined && body.user_uid.toLowerCase() !== user.id) {
      throw invalidRequest(`user_uid: ${body.user_uid} is not the user with email ${body.email}`);
    }
    await ctx.write(request, 'user', async (tx, changed) => {
      const at = nowIso();
      await repos.users.revoke(tx, user.id, at);
      await endUserSessions(tx, ctx.accountId, user.id, at);
      changed({ table: 'users', accountId: ctx.accountId, id: user.id });
      return { resourceId: user.id, value: undefined };
    });
    return { result: true };
  });
}
