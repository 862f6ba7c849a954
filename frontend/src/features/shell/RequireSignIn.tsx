import { useEffect } from 'react';
import { useTranslation } from 'react-i18next';
import { Navigate, useLocation } from 'react-router-dom';
import { useSession } from '../../auth/session';
import { Loading } from './States';

export function RequireSignIn({ children }: { children: React.ReactNode }) {
  const { user, ready } = useSession();
  const location = useLocation();
  const { t } = useTranslation();
  useEffect(() => {
    if (ready && user) document.title = t('app.title');
  }, [ready, user, t]);
  if (!ready) return <Loading label={t('common.loading')} />;
  if (!user) {
    const returnTo = location.pathname + location.search;
    return <Navigate to={`/signin?returnTo=${encodeURIComponent(returnTo)}`} replace />;
  }
  return <>{children}</>;
}
