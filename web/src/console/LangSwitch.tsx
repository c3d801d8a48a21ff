import { LANGS, strings, type Lang } from '../i18n';
import { useI18n } from './i18n-context';

export function LangSwitch() {
  const { t, lang, setLang } = useI18n();
  return (
    <label class="lang">
      <span class="visually-hidden">{t.language}</span>
      <select aria-label={t.language} value={lang} onChange={(e) => setLang((e.currentTarget as HTMLSelectElement).value as Lang)}>
        {LANGS.map((l) => (
          <option key={l} value={l}>{strings(l).langName}</option>
        ))}
      </select>
    </label>
  );
}
