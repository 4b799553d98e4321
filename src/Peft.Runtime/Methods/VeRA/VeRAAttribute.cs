namespace Peft;

/// <summary>
/// Adds a VeRA adapter (Kopiczko et al., "VeRA: Vector-based Random Matrix Adaptation"; Hugging Face PEFT's <c>vera</c>) to a
/// linear layer: <c>ΔW = diag(λ_b) B diag(λ_d) A</c>, where A <c>[r, in]</c> and B <c>[out, r]</c> are slices of frozen random
/// projections shared by every layer of the adapter and generated from <see cref="ProjectionPrngKey"/>, and only the vectors
/// λ_d <c>[r]</c> and λ_b <c>[out]</c> train (r + out parameters per layer). λ_b starts at zero, so the adapted layer starts
/// equal to the base layer.
/// </summary>
/// <remarks>
/// Put it on a field or property of type <c>Module&lt;Tensor, Tensor&gt;</c> that holds a <c>TorchSharp.Modules.Linear</c>.
/// The shared projections are sized by the largest layer of the adapter, so they are created when the model is complete:
/// by the model-level operations (training's <c>TrainableParameters()</c>, <c>Merge</c>, saving, loading) or
/// <c>model.BindSharedTensors()</c>, which a forward pass before any of them needs. Saved as PEFT's <c>VeraConfig</c> with
/// tensors <c>vera_lambda_b</c>, <c>vera_lambda_d</c> and, with <see cref="SaveProjection"/>, <c>base_model.vera_A</c> and
/// <c>base_model.vera_B</c>.
/// </remarks>
[AttributeUsage(AttributeTargets.Field | AttributeTargets.Property, AllowMultiple = true, Inherited = false)]
public sealed class VeRAAttribute : Attribute
{
    /// <summary>Declares a VeRA adapter.</summary>
    /// <param name="rank">The rank r of the shared projections (positive; PEFT's default is 256).</param>
    public VeRAAttribute(int rank = 256)
    {
        Rank = rank;
    }

    /// <summary>The rank r.</summary>
    public int Rank { get; }

    /// <summary>PEFT's <c>vera_dropout</c>, in [0, 1): dropout on the adapter's input, in training only.</summary>
    public double Dropout { get; set; }

    /// <summary>PEFT's <c>d_initial</c>: the initial value of every entry of λ_d (default 0.1).</summary>
    public double DInitial { get; set; } = 0.1;

    /// <summary>PEFT's <c>projection_prng_key</c>: the seed of the shared projections (default 0).</summary>
    public int ProjectionPrngKey { get; set; }

    /// <summary>PEFT's <c>save_projection</c>: whether adapter files store the shared projections (default true); without
    /// them a load regenerates them from <see cref="ProjectionPrngKey"/>.</summary>
    public bool SaveProjection { get; set; } = true;

    /// <summary>The adapter name (PEFT's adapter_name). Defaults to <c>"default"</c>.</summary>
    public string Name { get; set; } = AdapterNames.Default;
}
