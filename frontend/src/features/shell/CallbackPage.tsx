import { useEffect, useRef } from 'react';
import { useTranslation } from 'react-i18next';
import { useNavigate } from 'react-router-dom';
import { completeSignIn } from '../../auth/oauth';
import { useSession } from '../../auth/session';
import { Loading } from './States';

/** The OAuth redirect URI: redeem the code (or arrive here after the server's sign-out). */
export default function CallbackPage() {
  const { t } = useTranslation();
  const navigate = useNavigate();
  const { accept } = useSession();
  const started = useRef(false);
  useEffect(() => {
    if (started.current) return; // StrictMode runs effects twice; a code is redeemable once
    started.current = true;
    const params = new URLSearchParams(window.location.search);
    const state = params.get('state');
    if (!params.get('code') && !params.get('error') && (state === 'signed-out' || state === 'idle')) {
      navigate(`/signin?reason=${state}`, { replace: true });
      return;
    }
    completeSignIn(window.location.search)
      .then(async ({ tokens, returnTo }) => {
        await accept(tokens);
        navigate(returnTo, { replace: true });
      })
      .catch((error: unknown) => {
        const message = error instanceof Error ? error.message : String(error);
        navigate(`/signin?error=${encodeURIComponent(message)}`, { replace: true });
      });
  }, [accept, navigate]);
  return <Loading label={t('signIn.finishing')} />;
}
