import { Button, Group, Modal, Text } from '@mantine/core';
import { useTranslation } from 'react-i18next';
import { useIdleTimeout } from '../../auth/idle';
import { useSession } from '../../auth/session';

const MINUTE = 60_000;
// The server ends sign-in sessions after 15 idle minutes (PMS_SESSION_IDLE_TIMEOUT); the app matches it.
export const IDLE_TIMEOUT_MS = Number(import.meta.env.VITE_PMS_IDLE_MINUTES ?? 15) * MINUTE;
export const IDLE_WARNING_MS = Math.min(2 * MINUTE, IDLE_TIMEOUT_MS / 2);

export function IdleWarning() {
  const { t } = useTranslation();
  const { signOut } = useSession();
  const { remainingMs, stayActive } = useIdleTimeout(IDLE_TIMEOUT_MS, IDLE_WARNING_MS, () => void signOut('idle'));
  const seconds = Math.ceil((remainingMs ?? 0) / 1000);
  return (
    <Modal closeButtonProps={{ 'aria-label': t('common.close') }} opened={remainingMs !== null} onClose={stayActive} title={t('idle.title')} centered>
      <Text role="alert">{t('idle.message', { seconds })}</Text>
      <Group justify="flex-end" mt="md">
        <Button variant="default" onClick={() => void signOut()}>
          {t('shell.signOut')}
        </Button>
        <Button onClick={stayActive} data-autofocus>
          {t('idle.stay')}
        </Button>
      </Group>
    </Modal>
  );
}
