// React and ReactDOM as one ES module, the one the demo's import map names for `react` and
// `react-dom/client`: React 19 ships CommonJS only, so the test bundles this file with esbuild.
// One module for both, so that ReactDOM renders with the very React the binding imports.
import React from "react";

export default React;
export const {
  Children,
  Component,
  Fragment,
  StrictMode,
  Suspense,
  createContext,
  createElement,
  memo,
  startTransition,
  use,
  useCallback,
  useContext,
  useEffect,
  useId,
  useLayoutEffect,
  useMemo,
  useReducer,
  useRef,
  useState,
  useSyncExternalStore,
  useTransition,
} = React;
export { createRoot } from "react-dom/client";
