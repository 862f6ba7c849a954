/// <reference types="vite/client" />
interface ImportMetaEnv {
  readonly VITE_PMS_CLIENT_ID?: string;
  readonly VITE_PMS_IDLE_MINUTES?: string;
}
