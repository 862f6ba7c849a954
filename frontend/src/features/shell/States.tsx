import { Alert, Center, Loader, Text } from '@mantine/core';
import { useTranslation } from 'react-i18next';
import { FhirError } from '../../fhir/client';

export function Loading({ label }: { label: string }) {
  return (
    <Center p="xl" role="status" aria-live="polite">
      <Loader size="sm" mr="sm" aria-hidden />
      <Text>{label}</Text>
    </Center>
  );
}

export function Empty({ children }: { children: React.ReactNode }) {
  return (
    <Text c="dimmed" p="md" role="status">
      {children}
    </Text>
  );
}

/** A failed request in words: the server's OperationOutcome text, with a hint by status. */
export function ErrorMessage({ error }: { error: unknown }) {
  const { t } = useTranslation();
  if (!error) return null;
  const status = error instanceof FhirError ? error.status : 0;
  const title =
    status === 409
      ? t('errors.conflict')
      : status === 412
        ? t('errors.changedElsewhere')
        : status === 403
          ? t('errors.forbidden')
          : status === 404 || status === 410
            ? t('errors.notFound')
            : status >= 400 && status < 500
              ? t('errors.rejected')
              : t('errors.failed');
  const detail = error instanceof Error ? error.message : String(error);
  return (
    <Alert color="red" title={title} role="alert" style={{ whiteSpace: 'pre-line' }}>
      {detail}
    </Alert>
  );
}
