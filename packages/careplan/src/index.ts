export { careplanModule } from './module.ts';
export type { CareplanModuleOptions } from './module.ts';
export * from './constants.ts';
export { isRecoveryCareTeam, isRecoveryGoal, isRecoveryPlan } from './recognise.ts';
export { readCrisisPreferences, readStage, readStrengths, readWhatHelps, checkPlanExtensions } from './extensions.ts';
export { stageTransitions } from './stage.ts';
export { teamOrganisations, withinConsent, consentDecision, sharePlan } from './sharing.ts';
export { buildSummary, summaryOperation } from './operations/summary.ts';
export { stageHistoryOperation } from './operations/stage-history.ts';
