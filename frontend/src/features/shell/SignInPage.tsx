import { Alert, Button, Center, Group, Paper, Stack, Text, Title } from '@mantine/core';
import { useState } from 'react';
import { useTranslation } from 'react-i18next';
import { Navigate, useSearchParams } from 'react-router-dom';
import { useSession } from '../../auth/session';
import { LanguageSwitch } from './LanguageSwitch';

export default function SignInPage() {
  const { t } = useTranslation();
  const { user, ready, signIn } = useSession();
  const [params] = useSearchParams();
  const [busy, setBusy] = useState(false);
  const reason = params.get('reason');
  const error = params.get('error');
  if (ready && user) return <Navigate to={params.get('returnTo') ?? '/'} replace />;
  return (
    <Center mih="100vh" p="md" component="main">
      <Paper withBorder p="xl" w={420} maw="100%">
        <Stack>
          <Group justify="space-between">
            <Title order={1} size="h2">
              {t('app.title')}
            </Title>
            <LanguageSwitch />
          </Group>
          {reason === 'idle' && <Alert color="yellow" role="status">{t('signIn.idleSignedOut')}</Alert>}
          {reason === 'signed-out' && <Alert color="green" role="status">{t('signIn.signedOut')}</Alert>}
          {error && <Alert color="red" role="alert" title={t('signIn.failed')}>{error}</Alert>}
          <Text>{t('signIn.intro')}</Text>
          <Button
            size="md"
            loading={busy}
            onClick={() => {
              setBusy(true);
              void signIn(params.get('returnTo') ?? '/');
            }}
          >
            {t('signIn.button')}
          </Button>
          <Text size="sm" c="dimmed">
            {t('signIn.twoStep')}
          </Text>
        </Stack>
      </Paper>
    </Center>
  );
}
