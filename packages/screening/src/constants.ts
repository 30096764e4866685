// Canonical URLs and code systems the screening module reads and writes.
export const BASE = 'https://tic-exchange.org/fhir';
export const QUESTIONNAIRE_BASE = `${BASE}/Questionnaire/`;

export const LOINC = 'http://loinc.org';
export const DATA_ABSENT_REASON = 'http://terminology.hl7.org/CodeSystem/data-absent-reason';
export const OBSERVATION_CATEGORY = 'http://terminology.hl7.org/CodeSystem/observation-category';
export const OBSERVATION_INTERPRETATION = 'http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation';
export const CONFIDENTIALITY = 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality';
export const ACT_CODE = 'http://terminology.hl7.org/CodeSystem/v3-ActCode';
export const CONDITION_CLINICAL = 'http://terminology.hl7.org/CodeSystem/condition-clinical';
export const CONDITION_VERIFICATION = 'http://terminology.hl7.org/CodeSystem/condition-ver-status';
/** R4 core condition-category has no health-concern; US Core's code system does (extensible binding). */
export const US_CORE_CONDITION_CATEGORY = 'http://hl7.org/fhir/us/core/CodeSystem/condition-category';

export const ITEM_WEIGHT = 'http://hl7.org/fhir/StructureDefinition/itemWeight';
export const ORDINAL_VALUE = 'http://hl7.org/fhir/StructureDefinition/ordinalValue';
export const CALCULATED_EXPRESSION = 'http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-calculatedExpression';
export const OBSERVATION_EXTRACT = 'http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-observationExtract';

export const CUTOFF_EXTENSION = `${BASE}/StructureDefinition/screening-cutoff`;
export const BAND_EXTENSION = `${BASE}/StructureDefinition/screening-band`;
export const CLUSTER_EXTENSION = `${BASE}/StructureDefinition/screening-cluster`;

export const SCREENING_CODES = `${BASE}/CodeSystem/screening-codes`;
export const SCREENING_SEVERITY = `${BASE}/CodeSystem/screening-severity`;

/** Identifier systems of the resources this module derives from a QuestionnaireResponse. */
export const OBSERVATION_IDENTIFIER_SYSTEM = `${BASE}/sid/screening-observation`;
export const TASK_IDENTIFIER_SYSTEM = `${BASE}/sid/screening-follow-up-task`;
export const CONDITION_IDENTIFIER_SYSTEM = `${BASE}/sid/screening-health-concern`;

export const DECLINED_CODE = 'asked-declined';
