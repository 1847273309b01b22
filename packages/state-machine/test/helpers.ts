import { type Command, type StepOutput, type TransitionError } from "@nixfleet/state-machine"
import { Either } from "effect"

/** The step's output, or a test failure naming the transition error. */
export const right = (result: Either.Either<StepOutput, TransitionError>): StepOutput =>
  Either.getOrThrowWith(result, (error) => new Error(`expected a transition, got ${error._tag}: ${error.message}`))

/** The step's error, or a test failure naming the state it reached. */
export const left = (result: Either.Either<StepOutput, TransitionError>): TransitionError =>
  Either.match(result, {
    onLeft: (error) => error,
    onRight: (output) => {
      throw new Error(`expected a transition error, got state ${output.state.state}`)
    }
  })

export const tags = (effects: ReadonlyArray<Command>): ReadonlyArray<string> => effects.map((effect) => effect._tag)

/** Deep copy, so that a later comparison detects any mutation of the original. */
export const deepCopy = <A>(value: A): A => structuredClone(value)
