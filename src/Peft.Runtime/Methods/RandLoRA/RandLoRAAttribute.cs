namespace Peft;

/// <summary>
/// Adds a RandLoRA adapter ("RandLoRA: Full-rank parameter-efficient fine-tuning of large models"; Hugging Face PEFT's
/// <c>randlora</c>) to a linear layer: a full-rank update <c>ΔW = s · B̂ Â</c> (transposed when in &gt; out) built from frozen
/// random bases shared by every layer of the adapter and generated from <see cref="ProjectionPrngKey"/>, where only the
/// scales λ <c>[r, n]</c> (zeros) and γ <c>[n, min(in, out)]</c> train, n = ⌈min(in, out) / r⌉ and s = alpha / r.
/// </summary>
/// <remarks>
/// Put it on a field or property of type <c>Module&lt;Tensor, Tensor&gt;</c> that holds a <c>TorchSharp.Modules.Linear</c>.
/// The shared bases are sized by the largest layer of the adapter, so they are created when the model is complete: by the
/// model-level operations (training's <c>TrainableParameters()</c>, <c>Merge</c>, saving, loading) or
/// <c>model.BindSharedTensors()</c>, which a forward pass before any of them needs. Saved as PEFT's <c>RandLoraConfig</c>
/// with tensors <c>randlora_lambda</c>, <c>randlora_gamma</c> and, with <see cref="SaveProjection"/>,
/// <c>base_model.randlora_A</c> and <c>base_model.randlora_B</c>.
/// </remarks>
[AttributeUsage(AttributeTargets.Field | AttributeTargets.Property, AllowMultiple = true, Inherited = false)]
public sealed class RandLoRAAttribute : Attribute
{
    /// <summary>Declares a RandLoRA adapter.</summary>
    /// <param name="rank">The rank r of each random basis (positive; PEFT's default is 32). A smaller r means more bases and
    /// more trainable parameters.</param>
    /// <param name="alpha">PEFT's <c>randlora_alpha</c>: the scaling is alpha / r (PEFT's default 640, i.e. 20 · r).</param>
    public RandLoRAAttribute(int rank = 32, double alpha = 640)
    {
        Rank = rank;
        Alpha = alpha;
    }

    /// <summary>The basis rank r.</summary>
    public int Rank { get; }

    /// <summary>PEFT's <c>randlora_alpha</c>.</summary>
    public double Alpha { get; }

    /// <summary>PEFT's <c>randlora_dropout</c>, in [0, 1): dropout on the adapter's input, in training only.</summary>
    public double Dropout { get; set; }

    /// <summary>PEFT's <c>projection_prng_key</c>: the seed of the shared bases (default 0).</summary>
    public int ProjectionPrngKey { get; set; }

    /// <summary>PEFT's <c>save_projection</c>: whether adapter files store the shared bases (default true); without them a
    /// load regenerates them from <see cref="ProjectionPrngKey"/>.</summary>
    public bool SaveProjection { get; set; } = true;

    /// <summary>PEFT's <c>sparse</c>: ternary bases (−1 and +1 each with probability 1/6, else 0), divided by their standard
    /// deviation.</summary>
    public bool Sparse { get; set; }

    /// <summary>PEFT's <c>very_sparse</c>: ternary bases with −1 and +1 each with probability 1/(2√min_dim); wins over
    /// <see cref="Sparse"/>, as in PEFT.</summary>
    public bool VerySparse { get; set; }

    /// <summary>The adapter name (PEFT's adapter_name). Defaults to <c>"default"</c>.</summary>
    public string Name { get; set; } = AdapterNames.Default;
}
