import type { z } from 'zod';
import {
  agentOut,
  chainEntryOut,
  createAgentBody,
  createDepartmentBody,
  createHumanBody,
  createKeyBody,
  departmentOut,
  humanOut,
  keyCreatedOut,
  keyOut,
  meOut,
  updateAgentBody,
} from '../identity/identity-schemas.js';
import {
  approvalOut,
  approveBody,
  attachmentIn,
  authResultsOut,
  createMailboxBody,
  emailOrHeldOut,
  emailOut,
  eventOut,
  heldEmailOut,
  mailboxOut,
  messagePageOut,
  messageSummaryOut,
  rejectBody,
  replyBody,
  searchPageOut,
  sendAccepted,
  sendBody,
  tagsBody,
  tagsOut,
  updateMailboxBody,
} from '../mail/mail-schemas.js';
import { consentOut, putConsentBody } from '../phi/consent-schemas.js';
import { phiFindingOut, phiPolicySchema } from '../phi/phi-schemas.js';
import {
  putSecretBody,
  secretDeletedOut,
  secretListOut,
  secretRevealedOut,
  secretStoredOut,
  secretSummaryOut,
  totpCodeOut,
} from '../vault/vault-schemas.js';
import { auditEventOut, checkpointOut } from './audit-routes.js';
import { openApi } from './openapi-registry.js';

/**
 * Named component schemas of the OpenAPI document: each wire shape registered once with an id, so the document
 * says `$ref: '#/components/schemas/Agent'` instead of repeating the shape, and generated SDKs get named types.
 * Ids are part of the SDK's surface: add freely, rename nothing (like operationIds). Request bodies appear as
 * `<Id>Input` when zod's input and output shapes differ (openapi-transform.ts tidies the names).
 */
const COMPONENTS: [z.ZodType, string][] = [
  [meOut, 'Me'],
  [chainEntryOut, 'DelegationChainEntry'],
  [createDepartmentBody, 'CreateDepartmentRequest'],
  [departmentOut, 'Department'],
  [createHumanBody, 'CreateHumanRequest'],
  [humanOut, 'Human'],
  [createAgentBody, 'CreateAgentRequest'],
  [updateAgentBody, 'UpdateAgentRequest'],
  [agentOut, 'Agent'],
  [createKeyBody, 'CreateApiKeyRequest'],
  [keyCreatedOut, 'ApiKeyCreated'],
  [keyOut, 'ApiKey'],
  [createMailboxBody, 'CreateMailboxRequest'],
  [updateMailboxBody, 'UpdateMailboxRequest'],
  [mailboxOut, 'Mailbox'],
  [sendBody, 'SendEmailRequest'],
  [replyBody, 'ReplyEmailRequest'],
  [attachmentIn, 'AttachmentUpload'],
  [sendAccepted, 'SendAccepted'],
  [emailOut, 'Email'],
  [heldEmailOut, 'HeldEmail'],
  [emailOrHeldOut, 'EmailOrHeld'],
  [eventOut, 'EmailEvent'],
  [authResultsOut, 'AuthResults'],
  [messageSummaryOut, 'MessageSummary'],
  [messagePageOut, 'MessagePage'],
  [searchPageOut, 'SearchPage'],
  [tagsBody, 'SetTagsRequest'],
  [tagsOut, 'Tags'],
  [approvalOut, 'Approval'],
  [approveBody, 'ApproveRequest'],
  [rejectBody, 'RejectRequest'],
  [phiFindingOut, 'PhiFinding'],
  [phiPolicySchema, 'PhiPolicy'],
  [putConsentBody, 'SetConsentRequest'],
  [consentOut, 'Consent'],
  [putSecretBody, 'PutSecretRequest'],
  [secretStoredOut, 'SecretStored'],
  [secretSummaryOut, 'SecretSummary'],
  [secretListOut, 'SecretList'],
  [secretRevealedOut, 'SecretRevealed'],
  [secretDeletedOut, 'SecretDeleted'],
  [totpCodeOut, 'TotpCode'],
  [auditEventOut, 'AuditEvent'],
  [checkpointOut, 'AuditCheckpoint'],
];

let registered = false;
/** Registers the components once per process (the registry is module state). */
export const registerOpenApiComponents = () => {
  if (registered) return;
  registered = true;
  for (const [schema, id] of COMPONENTS) if (openApi.get(schema)?.id === undefined) openApi.add(schema, { id });
};
