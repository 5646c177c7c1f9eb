// Policy ids as agent documents carry them: enrollment (enroll.ts) and `agents reassign` (admin.ts)
// write policy_base_id beside policy_id.

/**
 * The policy id without its `#...` suffix (a version-specific policy, `policy1#9.2`), as upstream's
 * enrollment writes policy_base_id. Kibana's removeVersionSuffixFromPolicyId
 * (common/services/version_specific_policies_utils.ts) agrees on the ids it makes, which end in
 * `#<major>.<minor>`.
 */
export function policyBaseId(policyId: string): string {
  const i = policyId.indexOf('#');
  return i < 0 ? policyId : policyId.slice(0, i);
}
