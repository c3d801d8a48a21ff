import { createContext } from 'preact';
import { useContext } from 'preact/hooks';
import { strings, type Lang, type Strings } from '../i18n';

export interface I18n {
  t: Strings;
  lang: Lang;
  setLang: (l: Lang) => void;
}

export const I18nContext = createContext<I18n>({ t: strings('en'), lang: 'en', setLang: () => {} });

export function useI18n(): I18n {
  return useContext(I18nContext);
}
