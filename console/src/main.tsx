import { render } from 'preact';
import { App } from './app.tsx';
import './style.css';

const root = document.getElementById('app')!;
// The static "Loading…" placeholder goes: Preact renders into an empty container.
root.textContent = '';
render(<App />, root);
