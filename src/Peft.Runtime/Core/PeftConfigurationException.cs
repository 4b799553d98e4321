namespace Peft;

/// <summary>
/// A PEFT annotation or runtime call cannot be honoured: a member holds the wrong kind of layer, an adapter name is
/// invalid or duplicated, a rank does not fit the layer, and so on. The message names the member and adapter and
/// says how to fix it.
/// </summary>
public sealed class PeftConfigurationException : Exception
{
    /// <summary>Creates the exception with a default message.</summary>
    public PeftConfigurationException()
        : base("The PEFT configuration is invalid.")
    {
    }

    /// <summary>Creates the exception.</summary>
    /// <param name="message">What is wrong and how to fix it.</param>
    public PeftConfigurationException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with an inner exception.</summary>
    /// <param name="message">What is wrong and how to fix it.</param>
    /// <param name="innerException">The underlying error.</param>
    public PeftConfigurationException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    /// <summary>Creates the exception for a member and adapter.</summary>
    /// <param name="message">What is wrong and how to fix it.</param>
    /// <param name="memberName">The member (registered module name) concerned, if known.</param>
    /// <param name="adapterName">The adapter concerned, if any.</param>
    public PeftConfigurationException(string message, string? memberName, string? adapterName)
        : base(message)
    {
        MemberName = memberName;
        AdapterName = adapterName;
    }

    /// <summary>The member concerned, when known.</summary>
    public string? MemberName { get; }

    /// <summary>The adapter concerned, when known.</summary>
    public string? AdapterName { get; }
}
