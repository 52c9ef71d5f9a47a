/**
 * The fields of Cloudflare's get-identity document (spec §4.6) that Gatehouse always sends the
 * same way: the identity is a person signed in through an IdP, never a client certificate, a
 * service token, WARP or Gateway.
 */
export const FIXED_IDENTITY_FIELDS = {
  auth_status: 'NONE',
  common_name: '',
  service_token_id: '',
  service_token_status: false,
  is_warp: false,
  is_gateway: false,
};
