import { AppShell, Badge, Burger, Button, Group, NavLink, Text, Title } from '@mantine/core';
import { useDisclosure } from '@mantine/hooks';
import { useTranslation } from 'react-i18next';
import { NavLink as RouterLink, Outlet, useLocation } from 'react-router-dom';
import { useSession } from '../../auth/session';
import { IdleWarning } from './IdleWarning';
import { LanguageSwitch } from './LanguageSwitch';

const NAV = [
  { to: '/patients', label: 'nav.patients' },
  { to: '/calendar', label: 'nav.calendar' },
  { to: '/today', label: 'nav.today' },
  { to: '/admin/availability', label: 'nav.availability', roles: ['admin'] },
] as const;

export function Layout() {
  const { t } = useTranslation();
  const { user, signOut } = useSession();
  const [opened, { toggle, close }] = useDisclosure(false);
  const location = useLocation();
  const roles = user?.roles ?? [];
  const items = NAV.filter((item) => !('roles' in item) || item.roles.some((role) => roles.includes(role)));
  return (
    <AppShell header={{ height: 56 }} navbar={{ width: 200, breakpoint: 'md', collapsed: { mobile: !opened } }} padding="md">
      <a className="skip-link" href="#main">
        {t('shell.skipToContent')}
      </a>
      <AppShell.Header>
        <Group h="100%" px="md" justify="space-between" wrap="nowrap">
          <Group wrap="nowrap">
            <Burger opened={opened} onClick={toggle} hiddenFrom="md" size="sm" aria-label={t('shell.menu')} />
            <Title order={1} size="h4">
              {t('app.title')}
            </Title>
          </Group>
          <Group gap="sm" wrap="nowrap">
            <LanguageSwitch />
            <Text size="sm" visibleFrom="sm" data-testid="user-name">
              {user?.preferred_username}
            </Text>
            {roles.map((role) => (
              <Badge key={role} variant="light" data-testid="user-role">
                {t(`roles.${role}`, { defaultValue: role })}
              </Badge>
            ))}
            <Button size="xs" variant="default" onClick={() => void signOut()}>
              {t('shell.signOut')}
            </Button>
          </Group>
        </Group>
      </AppShell.Header>
      <AppShell.Navbar p="xs" component="nav" aria-label={t('shell.mainNavigation')}>
        {items.map((item) => (
          <NavLink
            key={item.to}
            component={RouterLink}
            to={item.to}
            label={t(item.label)}
            active={location.pathname.startsWith(item.to)}
            onClick={close}
          />
        ))}
      </AppShell.Navbar>
      <AppShell.Main id="main" tabIndex={-1}>
        <Outlet />
      </AppShell.Main>
      <IdleWarning />
    </AppShell>
  );
}
