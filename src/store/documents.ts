// Document shapes of the .fleet-* indices (see upstream model/schema.json). Both stores keep documents
// in exactly these shapes, so Kibana can read what the Elasticsearch store writes and the two stores
// stay comparable. Unknown fields written by Kibana are preserved (index signatures).

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
export type JsonObject = { [k: string]: Json };

/** A document as read, with the metadata the fleet logic needs. */
export interface Hit<T> {
  _id: string;
  _seq_no?: number;
  _source: T;
}

export interface RetiredApiKey {
  id: string;
  retired_at: string;
  output?: string;
  secret_id?: string;
}

export interface AgentOutput {
  api_key: string;
  api_key_id: string;
  permissions_hash: string;
  type: string;
  to_retire_api_key_ids?: RetiredApiKey[];
}

export interface AgentDoc {
  active: boolean;
  type: string;
  enrolled_at: string;
  policy_id?: string;
  policy_base_id?: string;
  agent_policy_id?: string;
  policy_revision_idx?: number;
  /** Deprecated (keys before per-output keys); a policy ack removes it. */
  default_api_key_history?: Json;
  access_api_key_id?: string;
  agent?: { id: string; version: string; type?: string };
  local_metadata?: Json;
  user_provided_metadata?: Json;
  tags?: string[];
  namespaces?: string[];
  components?: Json;
  last_checkin?: string;
  last_checkin_status?: string;
  last_checkin_message?: string;
  unhealthy_reason?: string[] | null;
  updated_at?: string;
  action_seq_no?: number[];
  outputs?: Record<string, AgentOutput>;
  unenrolled_at?: string | null;
  unenrolled_reason?: string | null;
  unenrollment_started_at?: string | null;
  audit_unenrolled_time?: string | null;
  audit_unenrolled_reason?: string | null;
  upgraded_at?: string | null;
  upgrade_started_at?: string | null;
  upgrade_status?: string | null;
  upgrade_details?: Json;
  upgrade_attempts?: string[] | null;
  upgrade?: { rollbacks?: { version: string; valid_until: string }[] };
  enrollment_id?: string;
  replace_token?: string;
  sequence_num?: number;
  [k: string]: unknown;
}

export interface EnrollmentKeyDoc {
  api_key_id: string;
  /** The token (base64 "id:secret"). The embedded store keeps none at rest and reads back '' (see api_key_prefix). */
  api_key: string;
  /** Embedded store: the token's first characters, for listing. */
  api_key_prefix?: string;
  active: boolean;
  policy_id?: string;
  name?: string;
  namespaces?: string[];
  created_at?: string;
  updated_at?: string;
  expire_at?: string;
  [k: string]: unknown;
}

/** How much of an enrollment token lists show (as Kibana masks them): enough to tell tokens apart. */
export function enrollmentTokenPrefix(token: string): string {
  return token.slice(0, 8);
}

export type RoleMap = { [role: string]: Json };

export interface PolicyData {
  id: string;
  revision: number;
  outputs: { [name: string]: JsonObject };
  inputs?: Json[];
  agent?: Json;
  fleet?: Json;
  output_permissions?: { [output: string]: RoleMap };
  secret_references?: { id: string }[];
  signed?: { data: string; signature: string };
  [k: string]: unknown;
}

export interface PolicyDoc {
  '@timestamp': string;
  policy_id: string;
  revision_idx: number;
  coordinator_idx: number;
  data: PolicyData;
  default_fleet_server: boolean;
  namespaces?: string[];
  unenroll_timeout?: number;
  [k: string]: unknown;
}

export interface ActionDoc {
  action_id: string;
  '@timestamp': string;
  expiration?: string;
  start_time?: string;
  minimum_execution_duration?: number;
  rollout_duration_seconds?: number;
  type: string;
  input_type?: string;
  timeout?: number;
  agents?: string[];
  data?: Json;
  namespaces?: string[];
  secret_references?: { id: string }[];
  signed?: { data: string; signature: string };
  user_id?: string;
  traceparent?: string;
  [k: string]: unknown;
}

export interface ActionResultDoc {
  '@timestamp': string;
  action_id: string;
  agent_id: string;
  namespaces?: string[];
  error?: string;
  data?: Json;
  action_input_type?: string;
  started_at?: string;
  completed_at?: string;
  action_data?: Json;
  action_response?: Json;
  [k: string]: unknown;
}
