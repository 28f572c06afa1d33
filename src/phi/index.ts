export { classifyInbound, INBOUND_RULES } from './inbound-classifier.js';
export { type About, type Assessment, assessMessage, assessText, type ContextOptions, type Cue } from './phi-context.js';
export { DISCLOSURES, type Disclosure } from './phi-context-lexicon.js';
export { loadPhiModel, type PhiModel, type PhiModelConfig } from './phi-model.js';
export {
  DEFAULT_HOLD_AT,
  type MailboxPhiPolicy,
  messageDecision,
  type PhiDecision,
  type PhiHoldReason,
  policyDecision,
} from './phi-policy.js';
export {
  blankHtml,
  categoriesOf,
  type MessageAttachment,
  type MessageToScan,
  scanMessage,
  scanText,
  sensitivityOf,
} from './phi-scanner.js';
export * from './phi-types.js';
