// Size bounds for policies, groups and lists, in one place. Cloudflare does not publish most of
// these; they are Gatehouse's choices, picked so that one app compiles in milliseconds and one
// evaluation stays in microseconds (bench/README.md), while leaving room for real configurations.

/** Rules in one include, require or exclude array of a policy or group. */
export const MAX_RULES_PER_SECTION = 50;
/** Policies attached to one application. */
export const MAX_POLICIES_PER_APP = 500;
/** Entries in one email or IP list. */
export const MAX_LIST_ITEMS = 10_000;
/** Longest chain of groups that include other groups (policy → group → group … ). */
export const MAX_GROUP_DEPTH = 8;
/** Highest `precedence` value accepted. */
export const MAX_PRECEDENCE = 1_000_000;

/** RFC 3696 erratum 1690: 64 octets local part + "@" + 255 octets domain. */
export const MAX_EMAIL_LENGTH = 320;
/** RFC 1035 DNS name, textual form. */
export const MAX_DOMAIN_LENGTH = 253;
/** Policy, group and list names. */
export const MAX_NAME_LENGTH = 350;
/** evaluate_url and keys_url of external evaluation rules. */
export const MAX_URL_LENGTH = 2048;
/** Any other string in a rule: ids, claim names and values, organisation and team names, CNs. */
export const MAX_VALUE_LENGTH = 1024;
/** CIDR text: the longest IPv6 form (45 characters with an embedded IPv4 tail) plus "/128". */
export const MAX_CIDR_LENGTH = 64;
/** Longest session_duration a policy may set: Cloudflare's UI offers at most one month (730h). */
export const MAX_SESSION_DURATION_MS = 730 * 60 * 60 * 1000;
