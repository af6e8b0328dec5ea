import { runDoctor } from './run-doctor.js';

export const doctorOperations = [runDoctor] as const;
