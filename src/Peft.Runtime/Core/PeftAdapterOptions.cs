namespace Peft;

/// <summary>Base of the per-method adapter options (<see cref="LoRAOptions"/>, <see cref="KroneckerOptions"/>, <see cref="PromptTuningOptions"/>).</summary>
public abstract record PeftAdapterOptions
{
    /// <summary>The method these options configure.</summary>
    public abstract PeftMethod Method { get; }
}
