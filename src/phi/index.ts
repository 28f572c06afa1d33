export { classifyInbound, INBOUND_RULES } from './inbound-classifier.js';
export { DEFAULT_HOLD_AT, type MailboxPhiPolicy, type PhiDecision, type PhiHoldReason, policyDecision } from './phi-policy.js';
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
