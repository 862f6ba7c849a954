import { ActionIcon, Button, Checkbox, Fieldset, Group, NativeSelect, SimpleGrid, Stack, TextInput } from '@mantine/core';
import { useState, type FormEvent } from 'react';
import { useTranslation } from 'react-i18next';
import {
  ALLERGY_STATUSES,
  CONSENT_FLAGS,
  LANGUAGE_CODES,
  RELATIONSHIPS,
  validate,
  type AllergyDraft,
  type AllergyStatus,
  type EmergencyContactDraft,
  type PatientDraft,
} from './registration';

interface Props {
  initial: PatientDraft;
  mode: 'create' | 'edit';
  busy: boolean;
  onSubmit: (draft: PatientDraft) => void;
  onCancel: () => void;
  /** Allergies are clinical content: only for roles that may record it. */
  clinical: boolean;
}

/** Demographics, contact details, language, emergency contacts, insurance, allergies and consents. */
export function PatientForm({ initial, mode, busy, onSubmit, onCancel, clinical }: Props) {
  const { t } = useTranslation();
  const [draft, setDraft] = useState(initial);
  const [touched, setTouched] = useState<Set<string>>(new Set());
  const [submitted, setSubmitted] = useState(false);
  const problems = validate(draft);
  const errorOf = (field: string) =>
    (submitted || touched.has(field)) && problems[field] ? t(problems[field]) : undefined;
  const touch = (field: string) => () => setTouched((old) => new Set(old).add(field));
  const set = <K extends keyof PatientDraft>(key: K, value: PatientDraft[K]) => setDraft((d) => ({ ...d, [key]: value }));
  const text = (key: keyof PatientDraft & string, label: string, extra: Record<string, unknown> = {}) => (
    <TextInput
      label={t(label)}
      value={draft[key] as string}
      onChange={(event) => set(key, event.currentTarget.value as never)}
      onBlur={touch(key)}
      error={errorOf(key)}
      {...extra}
    />
  );
  const setContact = (index: number, patch: Partial<EmergencyContactDraft>) =>
    set('contacts', draft.contacts.map((c, i) => (i === index ? { ...c, ...patch } : c)));
  const setAllergy = (index: number, patch: Partial<AllergyDraft>) =>
    set('allergies', draft.allergies.map((a, i) => (i === index ? { ...a, ...patch } : a)));
  const setRecordedStatus = (id: string, status: AllergyStatus) =>
    set('recordedAllergies', draft.recordedAllergies.map((a) => (a.id === id ? { ...a, status } : a)));

  const submit = (event: FormEvent) => {
    event.preventDefault();
    setSubmitted(true);
    if (Object.keys(problems).length === 0) onSubmit(draft);
    else {
      const first = Object.keys(problems)[0];
      window.setTimeout(() => document.querySelector<HTMLElement>(`[data-field="${first}"] input, [data-field="${first}"] select, [aria-invalid="true"]`)?.focus(), 0);
    }
  };

  return (
    <form onSubmit={submit} noValidate aria-label={t(mode === 'create' ? 'registration.title' : 'registration.editTitle')}>
      <Stack>
        <Fieldset legend={t('registration.demographics')}>
          <SimpleGrid cols={{ base: 1, sm: 2 }}>
            {text('given', 'patient.given', { required: true, autoFocus: true, 'data-field': 'given' })}
            {text('family', 'patient.family', { required: true })}
            <NativeSelect
              label={t('patient.sex')}
              required
              value={draft.gender}
              onChange={(event) => set('gender', event.currentTarget.value as PatientDraft['gender'])}
              onBlur={touch('gender')}
              error={errorOf('gender')}
              data={[
                { value: '', label: t('common.choose') },
                ...(['female', 'male', 'other', 'unknown'] as const).map((g) => ({ value: g, label: t(`gender.${g}`) })),
              ]}
            />
            {text('birthDate', 'patient.birthDate', { type: 'date', required: true })}
            {text('mrn', 'patient.mrn', { description: t('registration.mrnHint') })}
            <NativeSelect
              label={t('patient.language')}
              value={draft.language}
              onChange={(event) => set('language', event.currentTarget.value)}
              data={[{ value: '', label: t('common.notRecorded') }, ...LANGUAGE_CODES.map((code) => ({ value: code, label: t(`languages.${code}`) }))]}
            />
          </SimpleGrid>
        </Fieldset>

        <Fieldset legend={t('registration.contactDetails')}>
          <SimpleGrid cols={{ base: 1, sm: 2 }}>
            {text('phone', 'patient.phone', { type: 'tel', autoComplete: 'off' })}
            {text('email', 'patient.email', { type: 'email', autoComplete: 'off' })}
            {text('addressLine', 'patient.addressLine')}
            {text('city', 'patient.city')}
            {text('postalCode', 'patient.postalCode')}
          </SimpleGrid>
        </Fieldset>

        <Fieldset legend={t('registration.emergencyContacts')}>
          <Stack>
            {draft.contacts.map((contact, index) => (
              <Group key={index} align="flex-start" wrap="wrap">
                <TextInput
                  label={t('registration.contactName')}
                  value={contact.name}
                  onChange={(event) => setContact(index, { name: event.currentTarget.value })}
                  onBlur={touch(`contacts.${index}.name`)}
                  error={errorOf(`contacts.${index}.name`)}
                />
                <NativeSelect
                  label={t('registration.relationship')}
                  value={contact.relationship}
                  onChange={(event) => setContact(index, { relationship: event.currentTarget.value })}
                  data={RELATIONSHIPS.map((code) => ({ value: code, label: t(`relationships.${code}`) }))}
                />
                <TextInput
                  label={t('patient.phone')}
                  type="tel"
                  value={contact.phone}
                  onChange={(event) => setContact(index, { phone: event.currentTarget.value })}
                  onBlur={touch(`contacts.${index}.phone`)}
                  error={errorOf(`contacts.${index}.phone`)}
                />
                <ActionIcon
                  mt={28}
                  variant="subtle"
                  color="red"
                  aria-label={t('registration.removeContact', { index: index + 1 })}
                  onClick={() => set('contacts', draft.contacts.filter((_, i) => i !== index))}
                >
                  ✕
                </ActionIcon>
              </Group>
            ))}
            <Button variant="default" w="fit-content" onClick={() => set('contacts', [...draft.contacts, { name: '', relationship: 'C', phone: '' }])}>
              {t('registration.addContact')}
            </Button>
          </Stack>
        </Fieldset>

            <Fieldset legend={t('registration.insurance')}>
              <SimpleGrid cols={{ base: 1, sm: 2 }}>
                {text('payer', 'registration.payer')}
                {text('memberId', 'registration.memberId')}
              </SimpleGrid>
            </Fieldset>
            {clinical && (
            <Fieldset legend={t('registration.allergies')}>
              <Stack>
                {draft.recordedAllergies.map((allergy) => (
                  <NativeSelect
                    key={allergy.id}
                    data-testid={`allergy-status-${allergy.id}`}
                    label={t('registration.recordedAllergy', { substance: allergy.substance })}
                    value={allergy.status}
                    onChange={(event) => setRecordedStatus(allergy.id, event.currentTarget.value as AllergyStatus)}
                    data={ALLERGY_STATUSES.map((status) => ({ value: status, label: t(`allergyStatus.${status}`) }))}
                    maw={420}
                  />
                ))}
                {draft.allergies.map((allergy, index) => (
                  <Group key={index} align="flex-start" wrap="wrap">
                    <TextInput
                      label={t('registration.substance')}
                      value={allergy.substance}
                      onChange={(event) => setAllergy(index, { substance: event.currentTarget.value })}
                      onBlur={touch(`allergies.${index}.substance`)}
                      error={errorOf(`allergies.${index}.substance`)}
                    />
                    <NativeSelect
                      label={t('registration.criticality')}
                      value={allergy.criticality}
                      onChange={(event) => setAllergy(index, { criticality: event.currentTarget.value as AllergyDraft['criticality'] })}
                      data={(['low', 'high', 'unable-to-assess'] as const).map((c) => ({ value: c, label: t(`criticality.${c}`) }))}
                    />
                    <TextInput
                      label={t('registration.reaction')}
                      value={allergy.reaction}
                      onChange={(event) => setAllergy(index, { reaction: event.currentTarget.value })}
                    />
                    <ActionIcon
                      mt={28}
                      variant="subtle"
                      color="red"
                      aria-label={t('registration.removeAllergy', { index: index + 1 })}
                      onClick={() => set('allergies', draft.allergies.filter((_, i) => i !== index))}
                    >
                      ✕
                    </ActionIcon>
                  </Group>
                ))}
                <Button
                  variant="default"
                  w="fit-content"
                  onClick={() => set('allergies', [...draft.allergies, { substance: '', criticality: 'low', reaction: '' }])}
                >
                  {t(mode === 'create' ? 'registration.addAllergy' : 'registration.addNewAllergy')}
                </Button>
              </Stack>
            </Fieldset>
            )}

        <Fieldset legend={t('registration.consents')}>
          <Stack gap="xs">
            {CONSENT_FLAGS.map((flag) => (
              <Checkbox
                key={flag}
                label={t(`consents.${flag}`)}
                checked={draft.consents[flag]}
                onChange={(event) => set('consents', { ...draft.consents, [flag]: event.currentTarget.checked })}
              />
            ))}
          </Stack>
        </Fieldset>

        <Group justify="flex-end">
          <Button variant="default" onClick={onCancel}>
            {t('common.cancel')}
          </Button>
          <Button type="submit" loading={busy}>
            {t(mode === 'create' ? 'registration.submit' : 'registration.save')}
          </Button>
        </Group>
      </Stack>
    </form>
  );
}
