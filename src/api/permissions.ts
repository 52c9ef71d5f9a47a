// Cloudflare's API token permission groups that apply to Access and the built-in tunnel
// (spec §1.2). The API issue maps each endpoint to the groups that may call it.
export const PERMISSION_GROUPS = [
  'Access: Apps and Policies Read',
  'Access: Apps and Policies Write',
  'Access: Apps and Policies Revoke',
  'Access: Service Tokens Read',
  'Access: Service Tokens Write',
  'Access: Organizations, Identity Providers, and Groups Read',
  'Access: Organizations, Identity Providers, and Groups Write',
  'Access: Organizations Revoke',
  'Access: Audit Logs Read',
  'Cloudflare Tunnel Read',
  'Cloudflare Tunnel Write',
] as const;

export type PermissionGroup = (typeof PERMISSION_GROUPS)[number];

export function isPermissionGroup(name: string): name is PermissionGroup {
  return (PERMISSION_GROUPS as readonly string[]).includes(name);
}
