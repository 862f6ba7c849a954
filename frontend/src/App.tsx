import { MantineProvider, createTheme } from '@mantine/core';
import { QueryClient, QueryClientProvider } from '@tanstack/react-query';
import { lazy, Suspense, useCallback } from 'react';
import { BrowserRouter, Navigate, Route, Routes } from 'react-router-dom';
import { useTranslation } from 'react-i18next';
import { fhirBase } from './auth/oauth';
import { SessionProvider, useSession } from './auth/session';
import { FhirError } from './fhir/client';
import { FhirProvider } from './fhir/context';
import { Layout } from './features/shell/Layout';
import { Loading } from './features/shell/States';
import { RequireSignIn } from './features/shell/RequireSignIn';
import i18n from './i18n';

// Each screen is its own chunk: the first load carries only the shell.
const SignInPage = lazy(() => import('./features/shell/SignInPage'));
const CallbackPage = lazy(() => import('./features/shell/CallbackPage'));
const PatientSearchPage = lazy(() => import('./features/patients/PatientSearchPage'));
const PatientRegistrationPage = lazy(() => import('./features/patients/PatientRegistrationPage'));
const PatientSummaryPage = lazy(() => import('./features/patients/PatientSummaryPage'));
const PatientSectionPage = lazy(() => import('./features/patients/PatientSectionPage'));
const CalendarPage = lazy(() => import('./features/calendar/CalendarPage'));
const TodayPage = lazy(() => import('./features/calendar/TodayPage'));
const AvailabilityPage = lazy(() => import('./features/admin/AvailabilityPage'));

// Shade 8: white text on the primary colour passes WCAG AA contrast (shade 6, the default, does not).
const theme = createTheme({ primaryColor: 'blue', primaryShade: 8, defaultRadius: 'sm' });

const queryClient = new QueryClient({
  defaultOptions: {
    queries: {
      staleTime: 30_000,
      refetchOnWindowFocus: false,
      retry: (count, error) => !(error instanceof FhirError && error.status < 500) && count < 2,
    },
  },
});

function Api({ children }: { children: React.ReactNode }) {
  const session = useSession();
  const onUnauthorized = useCallback(() => void session.signIn(), [session]);
  return (
    <FhirProvider baseUrl={fhirBase()} getToken={session.getToken} onUnauthorized={onUnauthorized}>
      {children}
    </FhirProvider>
  );
}

function AppRoutes() {
  const { t } = useTranslation();
  return (
    <Suspense fallback={<Loading label={t('common.loading')} />}>
      <Routes>
        <Route path="/signin" element={<SignInPage />} />
        <Route path="/callback" element={<CallbackPage />} />
        <Route element={<RequireSignIn><Layout /></RequireSignIn>}>
          <Route index element={<Navigate to="/patients" replace />} />
          <Route path="/patients" element={<PatientSearchPage />} />
          <Route path="/patients/new" element={<PatientRegistrationPage />} />
          <Route path="/patients/:id" element={<PatientSummaryPage />} />
          <Route path="/patients/:id/edit" element={<PatientRegistrationPage />} />
          <Route path="/patients/:id/:section" element={<PatientSectionPage />} />
          <Route path="/calendar" element={<CalendarPage />} />
          <Route path="/today" element={<TodayPage />} />
          <Route path="/admin/availability" element={<AvailabilityPage />} />
          <Route path="*" element={<Navigate to="/patients" replace />} />
        </Route>
      </Routes>
    </Suspense>
  );
}

export function App() {
  const language = useCallback(() => i18n.language, []);
  return (
    <MantineProvider theme={theme}>
      <QueryClientProvider client={queryClient}>
        <BrowserRouter>
          <SessionProvider language={language}>
            <Api>
              <AppRoutes />
            </Api>
          </SessionProvider>
        </BrowserRouter>
      </QueryClientProvider>
    </MantineProvider>
  );
}
