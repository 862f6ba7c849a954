// The slice of FHIR R4 the staff app reads and writes. Resources stay plain JSON (what the server sends).

export interface Coding { system?: string; code?: string; display?: string }
export interface CodeableConcept { coding?: Coding[]; text?: string }
export interface Reference { reference?: string; display?: string }
export interface Period { start?: string; end?: string }
export interface Identifier { system?: string; value?: string; type?: CodeableConcept }
export interface ContactPoint { system?: 'phone' | 'email' | 'sms' | 'other'; value?: string; use?: string }
export interface HumanName { use?: string; text?: string; family?: string; given?: string[] }
export interface Address { line?: string[]; city?: string; postalCode?: string; country?: string }
export interface Extension { url: string; [value: string]: unknown }

export interface Resource {
  resourceType: string;
  id?: string;
  meta?: { versionId?: string; lastUpdated?: string };
  extension?: Extension[];
}

export interface PatientContact {
  relationship?: CodeableConcept[];
  name?: HumanName;
  telecom?: ContactPoint[];
}

export interface Patient extends Resource {
  resourceType: 'Patient';
  identifier?: Identifier[];
  name?: HumanName[];
  gender?: 'male' | 'female' | 'other' | 'unknown';
  birthDate?: string;
  telecom?: ContactPoint[];
  address?: Address[];
  communication?: { language: CodeableConcept; preferred?: boolean }[];
  contact?: PatientContact[];
  active?: boolean;
}

export interface BundleLink { relation: string; url: string }
export interface BundleEntry<T extends Resource = Resource> {
  fullUrl?: string;
  resource?: T;
  search?: { mode?: 'match' | 'include' | 'outcome' };
  request?: { method: string; url: string; ifMatch?: string };
  response?: { status: string; location?: string; outcome?: OperationOutcome };
}
export interface Bundle<T extends Resource = Resource> extends Resource {
  resourceType: 'Bundle';
  type: string;
  total?: number;
  link?: BundleLink[];
  entry?: BundleEntry<T>[];
}

export interface OperationOutcomeIssue {
  severity: 'fatal' | 'error' | 'warning' | 'information';
  code: string;
  diagnostics?: string;
  details?: CodeableConcept;
  expression?: string[];
}
export interface OperationOutcome extends Resource {
  resourceType: 'OperationOutcome';
  issue: OperationOutcomeIssue[];
}

export type AnyResource = Resource & Record<string, unknown>;
